"""Seeded synthetic video-QA world: simulation + rendering, questions, and mp4 / MSVD-QA writing."""

from voco.data.questions import ANSWER_VOCAB, QA, QUESTION_SCOPE, QUESTION_TYPES, make_questions
from voco.data.world import ObjectTrack, Video, WorldConfig, generate_video

_SYNTHETIC_NAMES = ("SPLITS", "iter_split", "make_example", "read_annotations", "video_seed_sequence")

__all__ = [
    "ANSWER_VOCAB", "QA", "QUESTION_SCOPE", "QUESTION_TYPES", "ObjectTrack", "Video", "WorldConfig",
    "generate_video", "make_questions", *_SYNTHETIC_NAMES,
]


def __getattr__(name: str):
    # voco.data.synthetic is imported lazily so that `python -m voco.data.synthetic` runs cleanly
    if name in _SYNTHETIC_NAMES:
        from voco.data import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'voco.data' has no attribute {name!r}")
