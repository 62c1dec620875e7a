#!/usr/bin/env python
"""Video-QA evaluation of a VoCo model: `python scripts/eval_videoqa.py --help`; see evaluation/README.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when not pip-installed

from evaluation.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
