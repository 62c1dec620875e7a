"""Random stand-in models and an offline tokenizer: tiny ones for tests, the demo and benchmarks on CPU, and
LLaVA-1.5-7B-shaped ones (random weights, any depth) for GPU benchmarks and bf16 parity checks."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipVisionConfig,
)

from voco.config import VoCoConfig
from voco.families import family_of

# Words the synthetic video world and the prompt template use; byte-level BPE covers any other text.
_CORPUS = """
A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful,
detailed, and polite answers to the human's questions. USER: ASSISTANT:
what which where when how many is there does the a an of in on at to from video clip segment frame
shape color colour circle square triangle diamond cross star red green blue yellow white purple orange
black gray left right top bottom center middle up down none beginning end first last before after
appear appears move moves moving enter leave change changes background yes no zero one two three four
five six seven eight nine 0 1 2 3 4 5 6 7 8 9 object objects
"""


def tiny_tokenizer(*, with_bos: bool = True, with_voco: bool = True, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained in milliseconds on a fixed corpus (deterministic, offline)."""
    specials = ["<unk>", "<s>", "</s>", "<pad>"] + (["<voco>"] if with_voco else [])
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([_CORPUS] * 4, trainer)
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="</s>", pad_token="<pad>",
        bos_token="<s>" if with_bos else None,
    )


def tiny_config(
    lm: str = "llama",
    vision: str = "clip",
    *,
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    rope_parameters: dict | None = None,
) -> LlavaConfig:
    """A LLaVA config with a tiny vision tower (`clip` | `siglip`) and decoder (`llama` | `qwen2`)."""
    vision_kwargs = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         image_size=image_size, patch_size=patch_size)
    if vision == "clip":
        vision_config, strategy = CLIPVisionConfig(projection_dim=32, **vision_kwargs), "default"
    elif vision == "siglip":
        vision_config, strategy = SiglipVisionConfig(**vision_kwargs), "full"
    else:
        raise ValueError(f"vision must be 'clip' or 'siglip', got {vision!r}")
    text_kwargs = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       max_position_embeddings=8192, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    if rope_parameters is not None:
        text_kwargs["rope_parameters"] = rope_parameters
    if lm == "llama":
        text_config = LlamaConfig(**text_kwargs)
    elif lm == "qwen2":
        text_config = Qwen2Config(**text_kwargs)
    else:
        raise ValueError(f"lm must be 'llama' or 'qwen2', got {lm!r}")
    return LlavaConfig(vision_config=vision_config, text_config=text_config, image_token_index=vocab_size - 1,
                       vision_feature_select_strategy=strategy, vision_feature_layer=-2)


def tiny_model(lm: str = "llama", vision: str = "clip", *, seed: int = 0, config: LlavaConfig | None = None,
               **voco_fields):
    """A random tiny `VoCoModel`; Qwen2 gets a tokenizer without <bos>, as the real one has none."""
    from voco.model import VoCoModel

    tokenizer = tiny_tokenizer(with_bos=(lm != "qwen2"))
    voco = VoCoConfig(**{"frames_per_segment": 2, **voco_fields})
    return VoCoModel.from_config(config or tiny_config(lm, vision), tokenizer, voco, seed=seed)


def llava15_7b_config(layers: int = 32, vision_layers: int = 24) -> LlavaConfig:
    """LLaVA-1.5-7B's shapes: CLIP ViT-L/14 at 336 px (576 tokens per frame) + a Llama-2-7B decoder; `layers`
    and `vision_layers` shrink the depths only (every width, head count and the vocabulary stay)."""
    if vision_layers < 2:
        raise ValueError(f"vision_layers must be >= 2 (LLaVA reads the second-to-last layer), got {vision_layers}")
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=vision_layers,
                              num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
    text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)
    return LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-2,
                       vision_feature_select_strategy="default", image_token_index=32000)


def smolvlm_256m_config():
    """SmolVLM-256M's shapes (random weights): SigLIP-base at 512 px in 16 px patches, pixel shuffle by 4 (64
    tokens per frame), SmolLM2-135M's decoder (30 layers, 576 wide, 3 KV heads of 64)."""
    from transformers import SmolVLMConfig

    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=512, patch_size=16)
    text = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                       num_key_value_heads=3, vocab_size=49280, max_position_embeddings=8192, rope_theta=100000.0,
                       tie_word_embeddings=True)
    return SmolVLMConfig(vision_config=vision, text_config=text.to_dict(), scale_factor=4, image_token_id=49190)


def llava7b_model(layers: int = 32, vision_layers: int = 24, *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.bfloat16, seed: int = 0, **voco_fields):
    """A random `VoCoModel` of LLaVA-1.5-7B's shapes (k=1, one frame per segment unless given), built directly
    in `dtype` on `device` (no fp32 copy in host memory first). RoPE inverse frequencies stay fp32, as
    `from_pretrained(dtype=...)` leaves them."""
    from voco.model import VoCoModel

    voco = VoCoConfig(**{"k": 1, "frames_per_segment": 1, **voco_fields})
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = VoCoModel.from_config(llava15_7b_config(layers, vision_layers), tiny_tokenizer(), voco, seed=seed)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def tiny_family_config(model_type: str, *, vocab_size: int = 512, hidden: int = 64, layers: int = 2):
    """A tiny random config of another family (voco/families.py): `llava_onevision` (SigLIP, 4x4 patch grid
    pooled to 2x2 per frame) or `llava_next_video` (CLIP, spatial pooling stride 2), Qwen2 decoder; `idefics3` or
    `smolvlm` (Idefics3's SigLIP at 32 px in 8 px patches, pixel shuffle by 2: 4 tokens per frame), Llama
    decoder (a tokenizer with <bos>, as SmolLM2's)."""
    from transformers import Idefics3Config, LlavaNextVideoConfig, LlavaOnevisionConfig, SmolVLMConfig

    if model_type in ("idefics3", "smolvlm"):
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=32, patch_size=8)
        text = tiny_config("llama", vocab_size=vocab_size, hidden=hidden, layers=layers).text_config
        cls = Idefics3Config if model_type == "idefics3" else SmolVLMConfig
        return cls(vision_config=vision, text_config=text.to_dict(), scale_factor=2, image_token_id=vocab_size - 1)

    base = tiny_config("qwen2", "siglip" if model_type == "llava_onevision" else "clip", vocab_size=vocab_size,
                       hidden=hidden, layers=layers)
    common = dict(vision_config=base.vision_config.to_dict(), text_config=base.text_config.to_dict(),
                  image_token_index=vocab_size - 1, video_token_index=vocab_size - 2)
    if model_type == "llava_onevision":
        return LlavaOnevisionConfig(**common, vision_feature_layer=-1, vision_feature_select_strategy="full",
                                    image_grid_pinpoints=[[32, 32]])
    if model_type == "llava_next_video":
        return LlavaNextVideoConfig(**common, vision_feature_layer=-2, vision_feature_select_strategy="default",
                                    spatial_pool_mode="average", spatial_pool_stride=2,
                                    image_grid_pinpoints=[[32, 32]])
    raise ValueError(f"model_type must be one of llava_onevision, llava_next_video, idefics3, smolvlm; got "
                     f"{model_type!r}")



def save_plain_checkpoint(model_type: str, folder) -> object:
    """A tiny random checkpoint of a family as transformers saves it (no voco.json), with its tokenizer; returns
    its config. Its placeholder tokens lie past the tokenizer's ids (as LLaVA's padded vocabulary has room), so no
    question text holds one; Qwen2-decoder families get a tokenizer without <bos>, as Qwen2's."""
    qwen2 = model_type in ("llava_next_video", "llava_onevision")
    tokenizer = tiny_tokenizer(with_bos=not qwen2, with_voco=False)
    vocab = len(tokenizer) + 8
    if model_type == "llava":
        config = tiny_config("llama", "clip", vocab_size=vocab)
        config.image_token_index = vocab - 1
    else:
        config = tiny_family_config(model_type, vocab_size=vocab)
    torch.manual_seed(0)
    family_of(config).model_class(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return config

TINY_CLASSES = ("cat", "dog", "red car", "coffee cup", "rocket", "flower", "tree", "boat")


def tiny_assembly_spec(folder, *, seed: int = 0):
    """A tiny stand-in of the bundled default's composition, written to `folder`: a random tiny Llama (a
    transformers folder with the offline tokenizer), a tiny random EfficientNet-Lite classifier with
    `TINY_CLASSES`, the class-evidence projector and LoRA adapters. Returns its `AssemblySpec`."""
    from pathlib import Path

    import torch
    from transformers import LlamaForCausalLM

    from voco.assembly import AssemblySpec

    folder = Path(folder).resolve()
    lm_folder = folder / "tiny_lm"
    if not (lm_folder / "config.json").is_file():
        torch.manual_seed(seed)
        LlamaForCausalLM(tiny_config("llama").text_config).save_pretrained(lm_folder)
        tiny_tokenizer(with_voco=False).save_pretrained(lm_folder)
    names = folder / "tiny_classes.txt"
    names.write_text("\n".join(TINY_CLASSES) + "\n")
    return AssemblySpec(
        lm_folder=str(lm_folder), class_names=str(names), top_k=2, lora_rank=2, lora_alpha=4.0,
        vision={"variant": "efficientnet-lite0", "image_size": 32, "num_classes": len(TINY_CLASSES),
                "width_coefficient": 0.25, "depth_coefficient": 0.25},
    )


TINY_ASSEMBLY_VOCO = dict(k=1, projector="linear", frames_per_segment=2, segment_start_token="<segment>",
                          image_mean=(0.498, 0.498, 0.498), image_std=(0.502, 0.502, 0.502))


def tiny_assembled_model(folder, *, seed: int = 0, **voco_fields):
    """The tiny stand-in assembled (fresh trained parts; LoRA B random so adapters matter in tests)."""
    import torch

    from voco.model import VoCoModel

    voco = VoCoConfig(**{**TINY_ASSEMBLY_VOCO, **voco_fields})
    model = VoCoModel.from_assembly(tiny_assembly_spec(folder, seed=seed), voco)
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B") or name.startswith("projector."):
                p.add_(torch.randn_like(p) * 0.05)
    return model


TINY_CONCEPTS = {"cat": ("cat", "animal"), "dog": ("dog", "animal"), "red car": ("car", "vehicle"),
                 "coffee cup": ("cup", "container"), "rocket": ("rocket", ""), "flower": ("flower", "plant"),
                 "tree": ("tree", "plant"), "boat": ("boat", "vehicle")}
"""The tiny classifier's classes -> (everyday name, hypernym), as voco/assets/imagenet_concepts.tsv says it."""


def tiny_evidence_spec(folder, *, seed: int = 0, faces: bool = False):
    """The tiny stand-in with the evidence tower and slot projector (the bundled default's composition since
    issue 30): `tiny_assembly_spec` plus a concept table of `TINY_CONCEPTS` and `evidence` settings."""
    from pathlib import Path

    spec = tiny_assembly_spec(folder, seed=seed)
    table = Path(folder).resolve() / "tiny_concepts.tsv"
    rows = [f"{i}\t{c}\t{TINY_CONCEPTS[c][0]}\t{TINY_CONCEPTS[c][1]}" for i, c in enumerate(TINY_CLASSES)]
    table.write_text("index\timagenet_name\tname\thypernyms\n" + "\n".join(rows) + "\n")
    spec.evidence = {"slots": 3, "min_score": 0.05, "faces": faces}
    spec.concepts = str(table)
    return spec
