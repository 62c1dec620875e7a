"""scripts/compression_table.py on a tiny budget: trains each row, prints the table, writes JSON, resumes."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tests.train.conftest import tiny_dict

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("compression_table", REPO / "scripts" / "compression_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compression_table_tiny_budget(tmp_path, capsys):
    table = _script()
    data = tiny_dict(tmp_path)
    data["stages"][0]["steps"] = 2
    config = tmp_path / "table.yaml"
    config.write_text("# python scripts/compression_table.py --config table.yaml\n" + yaml.safe_dump(data))
    out = tmp_path / "table.json"
    args = ["--config", str(config), "--variants", "full,pool-1,voco-2", "--json", str(out), "--no-progress"]
    assert table.main(args) == 0
    printed = capsys.readouterr().out
    assert "| full |" in printed and "| voco-2 |" in printed and "retention" in printed
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    # 32 px / patch 8 -> 16 tokens per frame, 2 frames per segment
    assert (rows["full"]["kept"], rows["pool-1"]["kept"], rows["voco-2"]["kept"]) == (32, 1, 2)
    assert rows["full"]["retention"] in (None, pytest.approx(1.0))
    assert all(r["steps"] == 2 for name, r in rows.items() if name != "question-only")
    assert rows["question-only"]["kept"] == 0
    # finished rows are loaded, not retrained
    stamp = (Path(data["output_dir"]) / "voco-2" / "final" / "metrics.json").stat().st_mtime
    assert table.main(args[:3] + ["voco-2", "--json", str(out), "--no-progress"]) == 0
    assert (Path(data["output_dir"]) / "voco-2" / "final" / "metrics.json").stat().st_mtime == stamp
    # --from-full: rows fine-tuned from the trained `full` row (the paper's setting)
    assert table.main(args[:3] + ["voco-1", "--from-full", "--json", str(out), "--no-progress"]) == 0
    tuned = json.loads(out.read_text())
    assert tuned["init_from"].endswith("full/final") and tuned["rows"][0]["variant"] == "voco-1"
    assert (Path(data["output_dir"]) / "from-full" / "voco-1" / "final" / "metrics.json").is_file()


def test_bad_variant_is_an_error(capsys):
    assert _script().main(["--config", str(REPO / "configs" / "table.yaml"), "--variants", "bogus-1"]) == 2
    assert "variant" in capsys.readouterr().err


def test_the_shipped_budget_pretrains_aligns_then_compresses_and_trains_pool_only_on_caches():
    from voco.train.config import load_config

    table = _script()
    base = load_config(REPO / "configs" / "table.yaml")
    assert [(s.objective, s.view) for s in base.stages] == [("patches", "cache"), ("answers", "full"),
                                                             ("answers", "cache")]
    pool = table.variant_config(base, "pool-1")
    assert [s.train for s in pool.stages] == [["vision"], ["lm"], ["lm", "pool"]]
    assert pool.model.voco["compressor"] == "pool" and pool.output_dir.endswith("pool-1")
    assert [s.train for s in table.variant_config(base, "voco-4").stages] == [["vision"], ["lm"], ["lm"]]
    qformer = table.variant_config(base, "qformer-1")  # the Q-Former trains with the LM where it reads caches
    assert [s.train for s in qformer.stages] == [["vision"], ["lm"], ["lm", "qformer"]]
    assert table.parse_variant("full") == ("full", 1) and table.parse_variant("qformer-2") == ("qformer", 2)
    for bad in ("full-2", "voco", "voco-0", "bogus-1"):
        with pytest.raises(ValueError, match="variant must be one of"):
            table.parse_variant(bad)


def test_probe_weight_reaches_compressed_rows_only(tmp_path):
    from voco.train.config import load_config

    table = _script()
    base = load_config(REPO / "configs" / "table.yaml")
    base.stages[-1].probe_weight = 0.5
    assert table.variant_config(base, "voco-1").stages[-1].probe_weight == 0.5
    assert table.variant_config(base, "pool-1").stages[-1].probe_weight == 0.5
    assert table.variant_config(base, "full").stages[-1].probe_weight == 0.0
