"""Can the default model's frozen LM (SmolLM2-135M-Instruct, no adapters) answer from class names given as plain text?

    python scripts/probe_text_names.py

A diagnostic for issue 11: the first recipe's assembled model failed to say class names even from uncompressed
name tokens (`scripts/probe_real_caches.py`), while the base LM, given the same names as words, often says them.
Prints one line per (names, question): greedy answer, 16 new tokens. Names are ImageNet classes; no photos are involved.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from voco.assembly import AssemblySpec, prepare_lm
from voco.folders import resolve_checkpoint

SCENES = (("moped",), ("rooster",), ("odometer",), ("Egyptian cat",), ("flamingo", "espresso"), ("daisy", "bee"))
QUESTIONS = ("What does the video show?", "What appears first in the video?", "Is there a dog in the video?")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="an assembled checkpoint whose LM to load (default: %(default)s)")
    args = p.parse_args(argv)
    folder = prepare_lm(AssemblySpec.load(resolve_checkpoint(args.model)).lm_gguf)
    lm, tok = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    for names in SCENES:
        for question in QUESTIONS:
            chat = [{"role": "system", "content": "You answer questions about a video in a few words."},
                    {"role": "user", "content": f"The video shows: {', then '.join(names)}.\n{question}"}]
            ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            with torch.no_grad():
                out = lm.generate(**ids, max_new_tokens=16, do_sample=False)
            answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            print(f"{', then '.join(names)!r:28} {question:36} -> {answer!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
