#!/usr/bin/env python
"""ActivityNet-QA: `python scripts/eval_videoqa.py --dataset activitynet ...`; `--help` for the options."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when not pip-installed

from evaluation.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(dataset="activitynet"))
