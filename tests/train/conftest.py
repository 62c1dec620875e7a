import pytest

from voco.train.config import config_from_dict


def tiny_dict(tmp_path, **top) -> dict:
    """A very small training config (from-scratch model, short clips) for fast tests."""
    data = {
        "output_dir": str(tmp_path / "run"),
        "seed": 0,
        "eval_every": 1000,
        "save_every": 1000,
        "model": {"init": "new", "image_size": 32, "patch_size": 8, "vision_hidden": 32, "vision_layers": 1,
                  "vision_heads": 2, "hidden": 64, "intermediate": 128, "layers": 2, "heads": 4, "kv_heads": 2,
                  "tokenizer_vocab": 500, "voco": {"k": 1, "frames_per_segment": 2, "segment_seconds": 2.0}},
        "data": {"world": {"size": 32, "fps": 4, "min_seconds": 2.0, "max_seconds": 5.0},
                 "questions_per_video": 3, "videos_per_batch": 2, "val_videos": 2, "test_videos": 2,
                 "blind_videos": 20},
        "stages": [{"name": "voco", "steps": 4, "lr": 3e-3, "warmup_steps": 1,
                    "train": ["vision", "projector", "lm"]}],
    }
    data.update(top)
    return data


@pytest.fixture
def tiny_config(tmp_path):
    def make(**top):
        return config_from_dict(tiny_dict(tmp_path, **top))

    return make


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the CI machine is small and shared; also keeps results reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
