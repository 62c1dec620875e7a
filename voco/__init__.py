"""VoCo-LLaMA video QA: compress video segments into VoCo KV caches, answer questions from them."""

from voco.cache import SegmentCache
from voco.config import PromptTemplate, VoCoConfig
from voco.model import VoCoModel

__all__ = ["PromptTemplate", "SegmentCache", "VoCoConfig", "VoCoModel"]
