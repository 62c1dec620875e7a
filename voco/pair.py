"""A VoCo model from a separate vision encoder and a causal LM, joined by a new projector (LLaVA's recipe).

Everything goes through transformers' own classes: the two folders' configs (`AutoConfig`) are composed into a
`LlavaConfig(vision_config=..., text_config=...)`; the vision tower is the class LLaVA builds for that vision
config, loaded with its own `from_pretrained` (a vision-only folder, or a full CLIP / SigLIP folder, whose
vision half it reads); the LM is `AutoModelForCausalLM.from_pretrained`; only the projector is new (seeded).
The `<voco>` token (and a segment-start token when the tokenizer has no <bos>) is added, with embedding rows at
the mean of the existing ones. The result is an ordinary `llava` checkpoint once saved:

    model = assemble_pair(PairSpec(vision="clip-vit-large-patch14-336", lm="vicuna-7b-v1.5"))
    model.save_pretrained("runs/pair")             # VoCoModel.from_pretrained("runs/pair") loads it back

Frames are prepared as the vision folder's processor prepares images (its preprocessor_config.json).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration

from voco.config import VoCoConfig
from voco.model import VoCoModel
from voco.preprocess import llava_preprocessing

IMAGE_TOKEN = "<image>"
STRATEGIES = ("default", "full")


@dataclass
class PairSpec:
    vision: str
    """A vision encoder folder (e.g. CLIPVisionModel / SiglipVisionModel, or a whole CLIP / SigLIP model)."""
    lm: str
    """A causal LM folder with its tokenizer (Llama, Qwen2, ... any decoder with RoPE)."""
    vision_feature_layer: int = -2
    """Which vision layer's output the projector reads (LLaVA-1.5: the second to last)."""
    vision_feature_select_strategy: str | None = None
    """`default` drops the vision tower's first token (CLIP's CLS), `full` keeps all; None: `default` when the
    tower outputs one token more than its patch grid, else `full`."""
    seed: int = 0
    """Seed of the new projector."""

    def __post_init__(self) -> None:
        for name in ("vision", "lm"):
            folder = Path(getattr(self, name)).expanduser()
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"pair {name}: {folder} is not a transformers model folder (no config.json);"
                                        " nothing is downloaded, give a local folder")
        if self.vision_feature_select_strategy not in (None, *STRATEGIES):
            raise ValueError(f"vision_feature_select_strategy must be one of {STRATEGIES} or None, "
                             f"got {self.vision_feature_select_strategy!r}")


def _vision_config(folder: str):
    """The vision config in `folder`: the folder's own, or the vision half of a two-tower (CLIP-like) config."""
    config = AutoConfig.from_pretrained(folder)
    return getattr(config, "vision_config", None) or config


def _strategy(tower, vision_config) -> str:
    """`default` when the tower puts one extra (CLS) token before its patch grid, else `full`."""
    size, patch = vision_config.image_size, vision_config.patch_size
    with torch.no_grad():
        pixels = torch.zeros(1, vision_config.num_channels, size, size, dtype=tower.dtype, device=tower.device)
        tokens = tower(pixel_values=pixels).last_hidden_state.shape[1]
    grid = (size // patch) ** 2
    if tokens not in (grid, grid + 1):
        raise ValueError(f"the vision tower outputs {tokens} tokens for a {grid}-patch grid; set "
                         "vision_feature_select_strategy explicitly")
    return "default" if tokens == grid + 1 else "full"


def assemble_pair(spec: PairSpec, voco: VoCoConfig | None = None, *, dtype: torch.dtype = torch.float32
                  ) -> VoCoModel:
    """A VoCo model (family `llava`) of the pretrained vision tower and LM in `spec`, with a new projector."""
    from voco.model import VoCoModel

    tokenizer = AutoTokenizer.from_pretrained(spec.lm)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)  # LLaVA's placeholder; VoCo never feeds it
    lm = AutoModelForCausalLM.from_pretrained(spec.lm, dtype=dtype)
    text_config = lm.config
    vision_config = _vision_config(spec.vision)
    config = LlavaConfig(vision_config=vision_config, text_config=text_config,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_layer=spec.vision_feature_layer, vision_feature_select_strategy="default")
    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(config)  # the structure only; every part is set below
    tower = type(llava.model.vision_tower).from_pretrained(spec.vision, dtype=dtype)
    config.vision_config = tower.config
    config.vision_feature_select_strategy = spec.vision_feature_select_strategy or _strategy(tower, tower.config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        projector = type(llava.model.multi_modal_projector)(config).to(dtype)
    llava.model.vision_tower = tower
    llava.model.multi_modal_projector = projector
    llava.model.language_model = lm.model
    llava.lm_head = lm.lm_head
    left = [name for name, p in llava.named_parameters() if p.is_meta]
    if left:
        raise RuntimeError(f"pair assembly left parameters unset: {left[:5]}")
    preprocessing = llava_preprocessing(spec.vision, tower.config.image_size)
    voco = dataclasses.replace(voco or VoCoConfig(), **preprocessing, voco_tuned=False)
    return VoCoModel.from_llava(llava, tokenizer, voco, add_tokens=True).eval()
