"""`python -m voco.train --config configs/default.yaml`: train (or resume) a VoCo model from a YAML config."""

from __future__ import annotations

import argparse
import sys

from voco.train.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voco.train",
        description="Train a VoCo model (the bundled models on CPU, or a LLaVA-1.5 checkpoint on GPUs "
                    "under torchrun) from a YAML config; resumes as the config's `resume` says "
                    "(auto: from OUTPUT_DIR/last when it exists).")
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--no-export", action="store_true",
                        help="do not write the config's export_dir (e.g. keep the bundled model while experimenting)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUTPUT_DIR/last exists")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="override the config's resume: auto (OUTPUT_DIR/last if any) or a run's `last` folder")
    parser.add_argument("--max-steps", type=int, help="stop (saving a resumable state) at this global step")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.no_export:
        config.export_dir = None
    if args.resume:
        config.resume = args.resume
    from voco.train.loop import train

    train(config, resume=not args.no_resume, progress=not args.no_progress, max_steps=args.max_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
