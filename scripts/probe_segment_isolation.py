"""What caching each segment alone changes (issue 24): a stock LLaVA checkpoint's answer from T segments of full
caches against its own transformers single pass over the same T segments in one context.

    python scripts/probe_segment_isolation.py                               # tiny random LLaVA, T = 1, 2, 4, 8
    python scripts/probe_segment_isolation.py --model /path/to/llava-1.5-7b-hf --device cuda --segments 1,2,4,6

Full caches compute each segment's KV on `[<seg>, V_t]` alone and place it (keys rotated) after the prompt's start
token, so the answer reads `[<seg>, V_1 .. V_T, question]` at the single pass's positions, but V_t's keys and values
were computed without V_1 .. V_t-1 before them; in transformers' single pass V_t attends to them. With T = 1 the
two are the same (tests/voco/test_oracle.py asserts equal greedy tokens). Per T, over --videos random-pixel videos
(one frame a segment): how often the first answer token is the same, the mean KL divergence of the first token's
distribution (single pass || cached), and how often the whole greedy answer (--tokens tokens) is the same.

A random checkpoint's attention is not a trained one's: on the tiny default the figures show the mechanism, not
its size for a real model; `--model` runs the same comparison on a real `llava` checkpoint. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from voco import VoCoModel
from voco.config import PromptTemplate
from voco.families import family_of
from voco.generation import GenerationConfig, generate_tokens
from voco.tiny import save_plain_checkpoint

QUESTION = "what is in the video?"


def single_pass(model: VoCoModel, theirs, segments: list[np.ndarray], tokens: int) -> tuple[torch.Tensor, list]:
    """transformers' first-token logits [vocab] and greedy tokens on [prefix, <image> x n per segment, question]."""
    prefix, suffix = model.prompt_ids(QUESTION)
    n = model.vision_embeds(segments).shape[1] * len(segments)
    ids = torch.tensor([prefix + [theirs.config.image_token_index] * n + suffix], device=model.device)
    pixels = model.pixel_values(segments)  # [T, 3, S, S]: one image per segment, in order
    with torch.no_grad():
        logits = theirs(input_ids=ids, pixel_values=pixels).logits[0, -1].float()
        out = theirs.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=tokens, do_sample=False)
    return logits, out[0, ids.shape[1]:].tolist()


def compare(model: VoCoModel, theirs, count: int, videos: int, tokens: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    side = model.config.vision_config.image_size
    same_first = same_answer = 0
    kl = []
    for _ in range(videos):
        segments = [rng.integers(0, 256, (1, side, side, 3), dtype=np.uint8) for _ in range(count)]
        caches = model.compress(segments)
        with torch.no_grad():
            mine_logits = model.next_token_logits(QUESTION, caches).float()
        mine = list(generate_tokens(model, QUESTION, caches, GenerationConfig(tokens)))
        their_logits, theirs_tokens = single_pass(model, theirs, segments, tokens)
        same_first += int(mine_logits.argmax() == their_logits.argmax())
        eos = model.tokenizer.eos_token_id
        theirs_tokens = theirs_tokens[:theirs_tokens.index(eos)] if eos in theirs_tokens else theirs_tokens
        same_answer += int(mine == theirs_tokens)
        p = torch.log_softmax(their_logits, -1)
        kl.append(float((p.exp() * (p - torch.log_softmax(mine_logits, -1))).sum()))
    return {"segments": count, "first_token_same": round(same_first / videos, 3),
            "answer_same": round(same_answer / videos, 3), "kl_first_token": round(max(float(np.mean(kl)), 0.0), 5)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a plain llava checkpoint folder (default: a tiny random one)")
    p.add_argument("--segments", default="1,2,4,8", help="comma-separated segment counts T")
    p.add_argument("--videos", type=int, default=20)
    p.add_argument("--tokens", type=int, default=8, help="greedy answer tokens compared")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else Path(tmp) / "llava"
        if not args.model:
            save_plain_checkpoint("llava", folder)
        # the prompt prefix is the start token alone: the case where one segment is exact (module doc)
        model = VoCoModel.from_pretrained(folder, compressor="full", device=args.device, frames_per_segment=1,
                                          prompt=PromptTemplate(system="", prefix="", question="\n{question} "
                                                                "ASSISTANT:")).eval()
        if model.config.model_type != "llava":
            p.error(f"--model: a llava checkpoint, got model_type {model.config.model_type!r}")
        model.save_pretrained(Path(tmp) / "same")  # the loader's additions (start token) for transformers too
        theirs = family_of(model.config).model_class.from_pretrained(Path(tmp) / "same").to(args.device).eval()
        rows = [compare(model, theirs, int(t), args.videos, args.tokens, args.seed) for t in args.segments.split(",")]
    for row in rows:
        print(f"T={row['segments']}: first token same {row['first_token_same']:.2f}, whole answer same "
              f"{row['answer_same']:.2f}, KL {row['kl_first_token']:.4f}", file=sys.stderr)
    print(json.dumps({"model": args.model or "tiny random llava", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
