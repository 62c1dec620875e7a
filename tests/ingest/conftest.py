from pathlib import Path

import pytest

from tests.fixtures.videos import CONTAINERS, pattern_frames, write_video

SEGMENT_SECONDS = 1.0  # tiny_model samples 2 frames per segment; 3 s videos give 3 segments


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """Tiny models run fastest on one thread, most of all on a busy machine (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from voco.tiny import tiny_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_model("llama", k=1).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def model(model_dir):
    from voco import VoCoModel

    return VoCoModel.from_pretrained(str(model_dir))


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    """Good videos: every container/codec, variable frame rate, rotated, with an audio track, synthetic world."""
    from voco.data.synthetic import make_example, write_mp4

    folder = tmp_path_factory.mktemp("videos")
    frames = pattern_frames(30)
    for name, fmt, codec, pix_fmt in CONTAINERS:
        write_video(folder / name, frames, fmt=fmt, codec=codec, pix_fmt=pix_fmt)
    times = [i * 0.05 if i < 15 else 0.75 + (i - 15) * 0.2 for i in range(30)]
    write_video(folder / "vfr.mkv", frames, fmt="matroska", times=times)
    (folder / "sub").mkdir()
    write_video(folder / "sub" / "rotated.mp4", frames, rotation=90)
    write_video(folder / "sub" / "with_audio.mp4", frames, audio=True)
    video, _ = make_example("test", 0)
    write_mp4(folder / "sub" / "synthetic.mp4", video.frames[:25], fps=10)
    return folder


@pytest.fixture
def one_video(tmp_path) -> Path:
    return write_video(tmp_path / "one.mp4", pattern_frames(25, seed=1))
