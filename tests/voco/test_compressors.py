"""The compressor protocol: a compressor registered here (not in the package) runs through compress, answer,
the single-pass reference, checkpoints, training and the table script with no other code changed; and no code
outside the protocol branches on a compressor's name."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.train.conftest import tiny_dict
from voco import VoCoModel
from voco.compressors import REGISTRY, Compressor, SegmentLayout, compressor_class, register
from voco.compressors.dense import segment_start
from voco.reference import DesignSegment, reference_logits
from voco.tiny import tiny_model
from voco.train.config import ConfigError, config_from_dict
from voco.train.forward import compress_with_aux

REPO = Path(__file__).resolve().parents[2]
QUESTION = "what color is the circle that moves left?"


class Gain(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class TailCompressor(Compressor):
    """A test compressor: a learned gain on the vision tokens, keep the KV of the last k of them, and an extra
    training loss (as ATP's budget loss would be)."""

    name = "tail"
    module_name = "tail_gain"
    options = {"gain": 1.0}

    @classmethod
    def build_module(cls, k: int, text_config, options: dict) -> nn.Module:
        gain = Gain(text_config.hidden_size)
        gain.scale.data.fill_(options["gain"])
        return gain

    def layout(self, n_vision: int) -> SegmentLayout:
        return SegmentLayout(length=1 + n_vision, kept_start=1 + n_vision - self.k, kept=self.k)

    def sequence_embeds(self, model, vision: torch.Tensor) -> torch.Tensor:
        return torch.cat([segment_start(model, vision.shape[0], vision.device), self.module(vision)], dim=1)

    def compress_for_training(self, model, vision):
        out = super().compress_for_training(model, vision)
        out.aux["gain_l2"] = 0.1 * (self.module.scale - 1).pow(2).sum()
        return out

    def design_row(self, model, vision: torch.Tensor) -> DesignSegment:
        start = model.lm.get_input_embeddings()(torch.tensor([model.segment_start_id]))
        n = vision.shape[0]
        return DesignSegment(torch.cat([start, vision * self.module.scale]), range(n + 1 - self.k, n + 1))

    def describe(self, n_vision: int) -> str:
        return f"the last {self.k} of {n_vision} vision tokens"


@pytest.fixture
def tail():
    register(TailCompressor)
    yield TailCompressor
    REGISTRY.pop(TailCompressor.name)


def test_a_registered_compressor_runs_end_to_end(tail, tmp_path, make_segments):
    model = tiny_model("llama", compressor="tail", k=2, seed=3)
    assert compressor_class("tail") is tail and model.tail_gain is model.compressor.module
    torch.nn.init.normal_(model.tail_gain.scale, mean=1.0, std=0.3)
    segments = make_segments(3, seed=4)
    caches = model.compress(segments)
    assert [(c.compressor, c.k, c.source_position) for c in caches] == [("tail", 2, 31)] * 3  # n = 32 tokens
    two_stage = model.next_token_logits(QUESTION, caches)
    assert float((two_stage - reference_logits(model, QUESTION, segments)).abs().max()) < 1e-5
    assert isinstance(model.answer(QUESTION, caches, max_new_tokens=3), str)
    # its weights are part of the identity and round-trip through a checkpoint
    model.save_pretrained(tmp_path)
    loaded = VoCoModel.from_pretrained(tmp_path)
    assert loaded.fingerprint == model.fingerprint and torch.equal(loaded.tail_gain.scale, model.tail_gain.scale)
    assert torch.equal(loaded.compress(segments)[0].kv, caches[0].kv)
    with torch.no_grad():
        loaded.tail_gain.scale.mul_(2)
    assert loaded.fingerprint != model.fingerprint
    # a voco model refuses the caches (by the compressor's check), naming the compressor
    with pytest.raises(ValueError, match="'tail' compressor"):
        tiny_model("llama", k=2, seed=3).compressor.check_caches(caches, caches[0].fingerprint)


def test_compressor_options_reach_the_class_and_the_identity(tail, tmp_path):
    plain = tiny_model("llama", compressor="tail", k=2)
    assert plain.compressor.opts == {"gain": 1.0} and "compressor_options" not in plain.voco.to_dict()
    set_ = tiny_model("llama", compressor="tail", k=2, compressor_options={"gain": 0.5})
    assert torch.all(set_.tail_gain.scale == 0.5) and set_.compressor.opts == {"gain": 0.5}
    set_.save_pretrained(tmp_path)
    assert VoCoModel.from_pretrained(tmp_path).voco.compressor_options == {"gain": 0.5}
    with torch.no_grad():
        set_.tail_gain.scale.fill_(1.0)  # same weights as `plain`: only the options differ
    assert set_.fingerprint != plain.fingerprint
    with pytest.raises(ValueError, match="not options of the 'tail' compressor"):
        tiny_model("llama", compressor="tail", compressor_options={"gian": 2.0})
    with pytest.raises(ValueError, match="not options of the 'voco' compressor"):
        tiny_model("llama", compressor_options={"gain": 2.0})


def test_a_registered_compressor_trains(tail, tmp_path, make_segments):
    model = tiny_model("llama", compressor="tail", k=1)
    out = compress_with_aux(model, make_segments(2))
    assert out.kv.shape[:1] == (2,) and out.layout == model.layout(32) and set(out.aux) == {"gain_l2"}
    (out.kv.sum() + out.aux["gain_l2"]).backward()
    assert model.tail_gain.scale.grad is not None and model.tail_gain.scale.grad.abs().sum() > 0
    # its module is a training parameter group of its own, and only of its own compressor's configs
    data = tiny_dict(tmp_path)
    data["model"]["voco"]["compressor"] = "tail"
    data["stages"][0]["train"] = ["lm", "tail_gain"]
    assert config_from_dict(data).stages[0].train == ["lm", "tail_gain"]
    data["model"]["voco"]["compressor"] = "voco"
    with pytest.raises(ConfigError, match="trains \\['tail_gain'\\] but model.voco.compressor is 'voco'"):
        config_from_dict(data)


def test_the_table_script_takes_a_registered_compressor(tail, tmp_path):
    spec = importlib.util.spec_from_file_location("compression_table", REPO / "scripts" / "compression_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    base = config_from_dict(tiny_dict(tmp_path))
    row = table.variant_config(base, "tail-3")
    assert row.model.voco["compressor"] == "tail" and row.stages[0].train == ["vision", "projector", "lm",
                                                                                "tail_gain"]
    assert table.tokens_per_segment(row) == (32, 3)


# ---- no branches on compressor names outside the protocol ------------------------------------------------

SOURCE_DIRS = ("voco", "app", "ingest", "store", "scripts", "bench", "evaluation")
PROTOCOL = ("voco/compressors/",)


def _branch_patterns() -> list[re.Pattern]:
    names = "|".join(sorted(REGISTRY))
    modules = "|".join(sorted(c.module_name for c in REGISTRY.values() if c.module_name))
    return [
        re.compile(r"""compressor[\w"'\]\)]*\s*(==|!=)\s*["']"""),  # compressor == "pool"
        re.compile(r"""["'][\w-]+["']\s*(==|!=)\s*[\w.\[\]"']*compressor"""),  # "pool" == compressor
        re.compile(r"""compressor[\w"'\]\)]*\s+(not\s+)?in\s*[(\[{]\s*["']"""),  # compressor in ("pool", ...)
        re.compile(rf"""["']({names}|{modules})["']\s+(not\s+)?in\s+[\w.]*(train|compressor)"""),  # "pool" in train
        re.compile(rf"""\bmodel\.({modules})\b"""),  # model.pool: a compressor's module by name
    ]


def _violations(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in _branch_patterns())]


def test_the_branch_check_catches_the_old_branches():
    old = '''
        self.pool = PoolCompressor(hidden, voco.k) if voco.compressor == "pool" else None
        kept = voco.k if voco.compressor != "full" else n
        if "pool" in stage.train and voco.compressor != "pool":
        full = next((r for r in rows if r["compressor"] == "full"), None)
        if kind not in ("pool", "voco") or compressor in ("pool", "voco"):
        if model.pool is not None:
    '''
    assert len(_violations(old)) == 6
    assert not _violations('if stage.view == "full" and stage.kl_weight > 0:\ncheck(compressor=self.name)')


def test_no_compressor_name_branches_outside_the_protocol():
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if not rel.startswith(PROTOCOL):
                found += [f"{rel}: {line}" for line in _violations(path.read_text())]
    assert not found, "branches on a compressor's name (move them into its class):\n" + "\n".join(found)
