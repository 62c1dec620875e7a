"""Building the model a config asks for: a new small LLaVA (with a tokenizer fitted to the synthetic world's
text) or a checkpoint folder (the bundled model, a VoCo checkpoint, or a plain LLaVA-1.5 folder)."""

from __future__ import annotations

import dataclasses
import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, PreTrainedTokenizerFast

from voco.assembly import AssemblySpec
from voco.config import PromptTemplate
from voco.data.questions import ANSWER_VOCAB
from voco.data.synthetic import make_example
from voco.model import VoCoModel
from voco.pair import PairSpec, assemble_pair
from voco.train.config import ModelSpec

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<voco>"]


def world_corpus(videos: int = 1500) -> list[str]:
    """Text the tokenizer should cut into few tokens: the prompt template and the world's questions/answers."""
    prompt = PromptTemplate()
    lines = [prompt.system, prompt.prefix, prompt.question, prompt.followup]
    answers = sorted(set().union(*ANSWER_VOCAB.values()))
    lines += [f" {a}{prompt.answer_end}" for a in answers] * 20
    for index in range(videos):  # ground truth only (no rendering): ~1 s
        _, qas = make_example("train", index, base_seed=12345, render=False)
        lines += [prompt.question.format(question=qa.question) + f" {qa.answer}{prompt.answer_end}" for qa in qas]
    lines += [prompt.question.format(question="describe the video.") + " red circle left up turns blue, "
              "green square center none</s>"] * 20
    return lines


def world_tokenizer(vocab_size: int = 700) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes) whose merges make the synthetic world's words single tokens."""
    tok = Tokenizer.from_str(_world_tokenizer_json(vocab_size))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="</s>", pad_token="<pad>", bos_token="<s>",
        additional_special_tokens=["<voco>"],
    )


@functools.lru_cache(maxsize=4)
def _world_tokenizer_json(vocab_size: int) -> str:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(world_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok.to_str()


def llava_config(spec: ModelSpec, vocab_size: int) -> LlavaConfig:
    """A small LLaVA: CLIP-style ViT -> projector -> Llama decoder."""
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden, intermediate_size=4 * spec.vision_hidden,
        num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
        image_size=spec.image_size, patch_size=spec.patch_size, projection_dim=spec.vision_hidden,
    )
    vocab = vocab_size + 1  # + LLaVA's <image> placeholder id (unused by the VoCo path)
    text = LlamaConfig(
        vocab_size=vocab, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
        max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False,
    )
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab - 1,
                       vision_feature_select_strategy="default", vision_feature_layer=spec.vision_feature_layer)


DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_model(spec: ModelSpec, seed: int = 0) -> VoCoModel:
    """The model a config's `model:` section describes, in its training dtype, on the CPU."""
    voco = spec.voco_config()
    if spec.init == "assembled":  # pretrained parts from packages, fresh trained parts (voco.assembly)
        return VoCoModel.from_assembly(AssemblySpec(**spec.assembly), voco, dtype=DTYPE[spec.dtype])
    if spec.init == "pair":  # a pretrained vision encoder + a pretrained LM, a new projector (voco.pair)
        return assemble_pair(PairSpec(vision=spec.vision, lm=spec.lm, seed=seed), voco, dtype=DTYPE[spec.dtype])
    if spec.init == "pretrained":
        overrides = {f.name: getattr(voco, f.name) for f in dataclasses.fields(voco) if f.name in spec.voco}
        return VoCoModel.from_pretrained(spec.path, dtype=DTYPE[spec.dtype], **overrides)
    tokenizer = world_tokenizer(spec.tokenizer_vocab)
    model = VoCoModel.from_config(llava_config(spec, len(tokenizer)), tokenizer, voco, seed=seed)
    return model.to(DTYPE[spec.dtype])
