"""scripts/compression_table.py --cache-dtypes: each row scored from its saved model once per way of storing caches,
the int8 row through the store's own quantize/dequantize round trip."""

import importlib.util
import json
from pathlib import Path

import yaml

import store.quant
from tests.train.conftest import tiny_dict

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("compression_table", REPO / "scripts" / "compression_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_row_is_scored_as_computed_and_as_int8_side_by_side(tmp_path, monkeypatch, capsys):
    calls = []

    def counted(kv):
        calls.append(tuple(kv.shape))
        return round_trip(kv)

    round_trip = store.quant.round_trip
    monkeypatch.setattr(store.quant, "round_trip", counted)
    config = tmp_path / "table.yaml"
    header = "# python scripts/compression_table.py --config table.yaml\n"
    config.write_text(header + yaml.safe_dump(tiny_dict(tmp_path)))
    out = tmp_path / "table.json"
    args = ["--config", str(config), "--variants", "voco-2", "--cache-dtypes", "model,int8", "--json", str(out),
            "--no-progress"]
    assert _script().main(args) == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"voco-2", "voco-2 (int8)", "question-only"}
    assert (rows["voco-2"]["cache_dtype"], rows["voco-2 (int8)"]["cache_dtype"]) == ("model", "int8")
    assert rows["voco-2"]["count"] == rows["voco-2 (int8)"]["count"]  # the same test questions
    trained = json.loads((tmp_path / "run" / "voco-2" / "final" / "metrics.json").read_text())["test"]
    assert rows["voco-2"]["average"] == trained["average"]  # re-scoring the saved model changes nothing
    assert calls and all(shape[-2:] == (2, 16) for shape in calls)  # every batch's kept KV, head_dim 16
    assert "| voco-2 (int8) |" in capsys.readouterr().out
    assert _script().main(args[:5] + ["model,int4"]) == 2
    # a trained checkpoint on its own test split (scripts/eval_cache_dtypes.py): the same scores
    spec = importlib.util.spec_from_file_location("eval_cache_dtypes", REPO / "scripts" / "eval_cache_dtypes.py")
    checkpoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checkpoint)
    capsys.readouterr()
    final = tmp_path / "run" / "voco-2" / "final"
    assert checkpoint.main(["--model", str(final), "--config", str(config), "--threads", "1"]) == 0
    scores = json.loads(capsys.readouterr().out)["cache_dtypes"]
    assert {d: s["average"] for d, s in scores.items()} == {"model": rows["voco-2"]["average"],
                                                            "int8": rows["voco-2 (int8)"]["average"]}
