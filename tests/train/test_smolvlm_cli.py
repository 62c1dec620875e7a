"""VoCo-tuning a SmolVLM checkpoint (issue 24's path from zero-shot to VoCo), end to end on the CPU: a tiny random
`smolvlm` folder as transformers saves it trains on LLaVA-format data through `python -m voco.train`, saves, reloads
with `VoCoModel.from_pretrained` as a smolvlm checkpoint, and answers; the tuned model is another identity than the
zero-shot one, so a library ingested before tuning is not mixed with one after (configs/smolvlm_voco.yaml is the
single-GPU recipe for the real checkpoint)."""

import numpy as np
import pytest
import torch

from tests.train.test_onevision_cli import COMMON, _dataset, _losses, _run
from voco import VoCoModel
from voco.families import family_of
from voco.tiny import tiny_family_config, tiny_tokenizer
from voco.video.frames import decode_video_segments


def test_a_smolvlm_checkpoint_is_voco_tuned_through_the_cli(tmp_path):
    tokenizer = tiny_tokenizer(with_bos=True, with_voco=False)
    config = tiny_family_config("smolvlm", vocab_size=len(tokenizer) + 8)
    torch.manual_seed(0)
    family_of(config).model_class(config).save_pretrained(tmp_path / "smolvlm")
    tokenizer.save_pretrained(tmp_path / "smolvlm")
    out = tmp_path / "tuned"
    recipe = {
        **COMMON, "output_dir": str(out),
        "model": {"init": "pretrained", "path": str(tmp_path / "smolvlm"),
                  "voco": {"k": 1, "frames_per_segment": 2, "segment_seconds": 1.0}},
        "data": {"dataset": "llava_json", "options": {"json": str(_dataset(tmp_path / "data")), "val_items": 1,
                                                      "test_items": 1},
                 "videos_per_batch": 3, "val_videos": 1, "test_videos": 1, "train_videos": 5},
        "stages": [{"name": "voco", "steps": 8, "lr": 3e-3, "warmup_steps": 1,
                    "train": ["projector", "lm", "voco_embedding"]}],
    }
    with pytest.warns(UserWarning, match="not been VoCo-tuned"):  # voco reads a new <voco> token
        _run(tmp_path, "smolvlm", recipe)
    losses = _losses(out)
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])
    tuned = VoCoModel.from_pretrained(out / "final")
    assert tuned.config.model_type == "smolvlm" and tuned.voco.voco_tuned
    zero_shot = VoCoModel.from_pretrained(tmp_path / "smolvlm", compressor="full", frames_per_segment=2,
                                          segment_seconds=1.0)
    assert tuned.fingerprint != zero_shot.fingerprint  # a library of each never mixes
    segments = decode_video_segments(tmp_path / "data" / "clip.mp4", segment_seconds=1.0, frames_per_segment=2)
    assert tuned.answer("what moves?", tuned.compress(segments), max_new_tokens=6).strip()
    assert zero_shot.answer("what moves?", zero_shot.compress(segments), max_new_tokens=6) is not None
