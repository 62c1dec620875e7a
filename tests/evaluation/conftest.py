from __future__ import annotations

import pytest

from tests.evaluation.layouts import truth_rows


@pytest.fixture(scope="session")
def world():
    """Five synthetic videos' questions (nothing rendered): [(video_id, [QA, ...])]."""
    from voco.data.synthetic import iter_split

    return [(video.video_id, qas) for video, qas in iter_split("test", 5, base_seed=11, render=False)]


@pytest.fixture(scope="session")
def rows(world):
    return truth_rows(world)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny VoCo checkpoint (frames_per_segment=2), saved once per session."""
    from voco.tiny import tiny_model

    path = tmp_path_factory.mktemp("tiny") / "ckpt"
    tiny_model("llama", k=1).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def synth_videos(tmp_path_factory):
    """Three short real synthetic videos in the MSVD-QA layout (python -m voco.data.synthetic)."""
    from voco.data.synthetic import write_dataset
    from voco.data.world import WorldConfig

    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 3, base_seed=0, split="test", questions_per_video=3,
                  config=WorldConfig(size=48, min_seconds=2.0, max_seconds=3.5))
    return root
