"""Checkpoint folders: bundled names (`voco/checkpoints/`) and what kind of folder a path holds.

    resolve_checkpoint("default")   # -> voco/checkpoints/default; a local folder as it is
"""

from __future__ import annotations

from pathlib import Path

BUNDLED = Path(__file__).parent / "checkpoints"
ASSEMBLY_JSON = "assembly.json"
"""An assembled model's recipe (`voco.assembly`): pretrained parts from packages, trained parts beside it."""


def is_assembled(folder: str | Path) -> bool:
    return Path(folder, ASSEMBLY_JSON).is_file()


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """`"default"` (or another bundled name) -> its folder in the package; otherwise a local folder."""
    path = Path(name_or_path).expanduser()
    if not path.exists() and (BUNDLED / str(name_or_path)).is_dir():
        path = BUNDLED / str(name_or_path)
    if not path.exists():
        bundled = sorted(p.name for p in BUNDLED.glob("*") if p.is_dir()) if BUNDLED.is_dir() else []
        raise FileNotFoundError(
            f"no checkpoint at {name_or_path!r}: pass a local checkpoint folder (nothing is downloaded) "
            f"or a bundled name {bundled or '(none installed yet: train one with python -m voco.train)'}"
        )
    if not (path / "config.json").is_file() and not is_assembled(path):
        raise FileNotFoundError(f"{path} has no config.json (nor {ASSEMBLY_JSON}): it is not a transformers "
                                "checkpoint folder or an assembled model")
    return path
