"""Model identity: one hash of exactly what changes the bytes of a VoCo cache.

A cache made by one model must never be served to another, and a change that leaves cache bytes
alone must not orphan a library of stored caches. So the identity covers:

- every weight the compress pass reads, hashed in full (vision tower, projector, pool compressor,
  the decoder LM); the output head is left out (pass 1 never reads it; when it is tied to the input
  embeddings those are covered under their own name);
- the architecture config (layers, RoPE, feature layer ...), without where it was loaded from;
- the compression settings (`COMPRESSION_FIELDS` of voco.json) and the token ids they resolve to.

It does not cover (`OUTSIDE_IDENTITY`): the prompt template (read only by the answer pass) and the
segment sampling (segment seconds, frames per segment), which belong to the stored video's key.

Hashing 14 GB of 7B weights takes seconds, so the weights' digest is cached on disk per loaded
checkpoint (`remember_source`): keyed by every file of the checkpoint folder (name, size, times, inode),
the load arguments and the library versions, and used only while the loaded tensors are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from voco.preprocess import ResizeMode

log = logging.getLogger(__name__)

IDENTITY_VERSION = "voco-identity/2"
COMPRESSION_FIELDS = ("k", "compressor", "compressor_options", "projector", "image_mean", "image_std", "image_resize")
"""voco.json fields that change what the compress pass computes (beside the token ids, hashed too)."""
OUTSIDE_IDENTITY = {
    "voco_token": "only the token id it resolves to counts (hashed as voco_token_id)",
    "segment_start_token": "only the token id it resolves to counts (hashed as segment_start_id)",
    "prompt": "read only when answering, never by the compress pass",
    "segment_seconds": "segment sampling: part of the stored video's key",
    "frames_per_segment": "segment sampling: part of the stored video's key",
    "voco_tuned": "only decides whether loading warns",
    "answer_segments": "read only when answering (how many segments one answer reads)",
}
DIGEST_CACHE_ENV = "VOCO_DIGEST_CACHE"
_NOT_ARCHITECTURE = {"_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures"}


def architecture(config: dict) -> dict:
    """A config without where it was loaded from or its dtype (the weights' own dtype counts)."""
    return {k: architecture(v) if isinstance(v, dict) else v for k, v in config.items() if k not in _NOT_ARCHITECTURE}


def compression_settings(model, voco: dict | None = None) -> dict:
    """What the compress pass computes, beside the weights: voco.json's compression fields and token ids.

    voco: another voco.json (as a dict) for the same weights and tokenizer: its compression fields count.
    """
    voco = voco if voco is not None else model.voco.to_dict()
    # voco.json leaves default-valued fields out (image_resize: stretch): hash the value in force
    defaults = {"image_resize": ResizeMode.STRETCH.value}
    settings = {name: voco.get(name, defaults.get(name)) for name in COMPRESSION_FIELDS}
    if not settings["compressor_options"]:  # only set options count: identities of models without stay as they were
        del settings["compressor_options"]
    settings["voco_token_id"] = model.voco_token_id
    settings["segment_start_id"] = model.segment_start_id
    if model.family.segment_tail is not None:  # only such families: the identities of the others stay as they were
        settings["segment_tail"] = model.family.segment_tail
    reading = getattr(model.vision_tower, "identity", None)
    if callable(reading):  # a tower whose output depends on more than its weights (the evidence tower's tables)
        settings["vision_reading"] = reading()
    return json.loads(json.dumps(settings))  # tuples and lists hash alike


def identity_tensors(model) -> dict[str, torch.Tensor]:
    """The state-dict tensors that change cache bytes: all but the output head's own."""
    head = model.lm.get_output_embeddings()
    head_names = {f"{name}." for name, module in model.named_modules() if module is head}
    return {name: t for name, t in model.state_dict().items()
            if not any(name.startswith(prefix) for prefix in head_names)}


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's raw bytes, every one of them (any dtype, any device)."""
    flat = t.detach().contiguous().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    return hashlib.sha256(memoryview(flat.view(torch.uint8).numpy())).hexdigest()


def weights_digest_in_memory(model) -> str:
    """Every identity tensor hashed in full; tensors in parallel (hashlib releases the GIL)."""
    tensors = sorted(identity_tensors(model).items())
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        digests = list(pool.map(tensor_digest, (t for _, t in tensors)))
    h = hashlib.sha256()
    for (name, t), digest in zip(tensors, digests, strict=True):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:{digest}\n".encode())
    return h.hexdigest()


def tensors_token(model) -> tuple:
    """Changes whenever a weight is modified in place, replaced, resized or cast (not on a device move).
    Parameters and buffers walked directly: `state_dict` costs 5x more (18 vs 3 ms on the default model), and
    the answering session asks for the fingerprint on every answer."""
    named = (*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False))
    return tuple((name, t._version, tuple(t.shape), t.dtype) for name, t in named)


@dataclass(frozen=True)
class WeightsSource:
    """Where a loaded model's weights came from: the digest-cache key, and the tensors as loaded."""

    key: str
    token: tuple


def _digest_cache_dir() -> Path:
    env = os.environ.get(DIGEST_CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "voco-digests"


def _folder_stamp(folder: Path) -> list[tuple[str, int, int, int, int]]:
    """Every file of the folder as (name, size, mtime, ctime, inode): a rewritten file gets a new stamp
    (as long as the file system's clock ticks between the two writes, as for the store's file hashes)."""
    stamp = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            st = path.stat()
            stamp.append((path.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return stamp


def remember_source(model, folder: Path, load_args: dict) -> None:
    """Note that `model` is exactly what loading `folder` with `load_args` gives (call right after loading)."""
    import transformers

    versions = {"identity": IDENTITY_VERSION, "torch": torch.__version__, "transformers": transformers.__version__}
    key = json.dumps({**versions,
                      "folder": str(folder.resolve()), "files": _folder_stamp(folder), "load": load_args},
                     sort_keys=True, default=str)
    model._weights_source = WeightsSource(hashlib.sha256(key.encode()).hexdigest(), tensors_token(model))


def _cached_digest(key: str) -> str | None:
    try:
        data = json.loads((_digest_cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    digest = data.get("weights_digest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _store_digest(key: str, digest: str) -> None:
    folder = _digest_cache_dir()
    path = folder / f"{key}.json"
    tmp = folder / f".{key}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"weights_digest": digest, "identity": IDENTITY_VERSION}))
        os.replace(tmp, path)
    except OSError as err:  # a read-only home only costs a re-hash next time
        log.info("cannot cache the weights digest in %s (%s); set %s to a writable folder", folder, err,
                 DIGEST_CACHE_ENV)
        tmp.unlink(missing_ok=True)


def weights_digest(model) -> str:
    """The full-weights digest, from the digest cache when the weights are exactly as loaded."""
    source: WeightsSource | None = getattr(model, "_weights_source", None)
    as_loaded = source is not None and source.token == tensors_token(model)
    if as_loaded and (cached := _cached_digest(source.key)) is not None:
        return cached
    digest = weights_digest_in_memory(model)
    if as_loaded:
        _store_digest(source.key, digest)
    return digest


def fingerprint(model, voco: dict | None = None) -> str:
    """The model's identity (sha256 hex): architecture + compression settings + every weight pass 1 reads.

    voco: the identity the same weights have under another voco.json (a dict), e.g. one an old store recorded.
    """
    h = hashlib.sha256(IDENTITY_VERSION.encode())
    h.update(json.dumps(architecture(model.config.to_dict()), sort_keys=True, default=str).encode())
    h.update(json.dumps(compression_settings(model, voco), sort_keys=True).encode())
    h.update(weights_digest(model).encode())
    return h.hexdigest()


def legacy_fingerprints(model, voco_configs: list[dict]) -> list[str]:
    """The identity older code gave these weights under each voco.json (a dict, as a store recorded it):
    sha256 of the config, the whole voco.json and every 4096th-or-so value of each tensor.

    Only for recognising the model rows such stores hold (ingest.identify); never as an identity.
    """
    arch = json.dumps(architecture(model.config.to_dict()), sort_keys=True, default=str).encode()
    samples = []
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].float().cpu().numpy().tobytes()
            samples.append((f"{name}:{tuple(t.shape)}:{t.dtype}".encode(), sample))
    out = []
    for voco in voco_configs:
        h = hashlib.sha256(arch)
        h.update(json.dumps(voco, sort_keys=True).encode())
        for head, sample in samples:
            h.update(head)
            h.update(sample)
        out.append(h.hexdigest())
    return out
