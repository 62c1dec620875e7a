"""scripts/probe_kept_names.py on the tiny assembled stand-in: its compress step keeps the full view's first
`keep` tokens, positioned as the full view placed them."""

import importlib.util
from pathlib import Path

import torch

from voco.tiny import tiny_assembled_model
from voco.train.class_mixture import ClassMixtureSpec, ClassMixtureWorld
from voco.train.forward import compress_segments

REPO = Path(__file__).resolve().parents[2]


def test_keeps_the_first_tokens_of_the_full_view(tmp_path):
    spec = importlib.util.spec_from_file_location("probe_kept_names", REPO / "scripts" / "probe_kept_names.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    model = tiny_assembled_model(tmp_path).eval()
    segments = ClassMixtureWorld.for_model(model, ClassMixtureSpec()).load("val", 0).segments
    with torch.no_grad():
        full, full_layout = compress_segments(model, segments, view="full")
        kept, layout = probe.keep_first(2)(model, segments)
        every, every_layout = probe.keep_first(0)(model, segments)
    assert full_layout.kept == model.projector.tokens_per_frame * model.voco.frames_per_segment
    assert layout.kept == 2 and layout.kept_start == full_layout.kept_start
    torch.testing.assert_close(kept, full[..., :2, :])
    torch.testing.assert_close(every, full)
    assert every_layout == full_layout
