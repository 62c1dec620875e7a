"""VoCo-LLaMA video QA: compress video segments into VoCo KV caches, answer questions from them.

The names below load on first use (PEP 562), so light parts of the package (`voco.video`'s extension list, the
segment rule) import without torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voco.cache import SegmentCache
    from voco.config import PromptTemplate, VoCoConfig
    from voco.loading import load_model
    from voco.model import VoCoModel

_HOMES = {"SegmentCache": "voco.cache", "PromptTemplate": "voco.config", "VoCoConfig": "voco.config",
          "VoCoModel": "voco.model", "load_model": "voco.loading"}
__all__ = ["PromptTemplate", "SegmentCache", "VoCoConfig", "VoCoModel", "load_model"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'voco' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
