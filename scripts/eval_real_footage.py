"""Held-out real footage: camera pans over the sample photos of scikit-image, scikit-learn and matplotlib.

    python scripts/eval_real_footage.py                              # the bundled default (real-footage) model
    python scripts/eval_real_footage.py --model synthetic          # the synthetic-world model, for comparison

These photos are never used to train or tune any model (they stand for the footage users bring). Each video
pans across one photo per scene (8 fps, 6 s per scene, 320x240 frames); videos hold 1, 2 or 3 scenes. The
model answers from its VoCo caches (`VoCoModel.compress` on the ingest sampling rule, then `answer`). The
question-only baseline is the same model answering the same questions from caches of mid-grey frames (same
number of segments): what it gets right comes from the question alone. Scoring, per question kind:

    what     every scene's subject is named (any accepted word, e.g. cat / kitten / tabby)
    exists   "yes"/"no" is right (half the questions ask about a subject the video does not show)
    first    the first scene's subject is named and no other scene's  (multi-scene videos)
    last     the last scene's subject is named and no other scene's   (multi-scene videos)
    when     beginning / middle / end (or throughout) is right        (multi-scene videos)

Prints one JSON line with accuracies per kind for the model and the baseline, and writes samples with
--samples FILE.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import re
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from voco import VoCoModel
from voco.segments import split_indices
from voco.train.class_mixture import article


@dataclass(frozen=True)
class Photo:
    package: str
    file: str
    word: str
    """How a question names the subject."""
    accepted: tuple[str, ...]
    """Words that name the subject correctly in an answer (human labels of the photo, not classifier output)."""


PHOTOS = (
    Photo("skimage", "data/chelsea.png", "cat", ("cat", "kitten", "tabby", "kitty")),
    Photo("skimage", "data/coffee.png", "coffee", ("coffee", "espresso", "cup", "mug", "cappuccino", "latte")),
    Photo("skimage", "data/rocket.jpg", "rocket", ("rocket", "missile", "spacecraft", "space shuttle")),
    Photo("skimage", "data/motorcycle_left.png", "motorcycle", ("motorcycle", "motorbike", "moped", "scooter")),
    Photo("skimage", "data/camera.png", "camera", ("camera", "tripod", "photographer", "cameraman")),
    Photo("skimage", "data/astronaut.png", "astronaut", ("astronaut", "space suit", "spacesuit", "woman", "person")),
    Photo("sklearn", "datasets/images/china.jpg", "temple",
          ("temple", "palace", "pagoda", "shrine", "monastery", "church", "building", "tower", "roof")),
    Photo("sklearn", "datasets/images/flower.jpg", "flower", ("flower", "daisy", "petal", "blossom", "bloom")),
    Photo("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "woman",
          ("woman", "person", "lady", "officer", "uniform", "admiral")),
)
FPS, SCENE_SECONDS, SIZE = 8, 6.0, (320, 240)
KINDS = ("what", "exists", "first", "last", "when")


def photo_pixels(photo: Photo) -> np.ndarray:
    spec = importlib.util.find_spec(photo.package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"error: {photo.package} is not installed (pip install --no-deps scikit-image "
                         "scikit-learn): its sample photos are the held-out footage")
    return np.asarray(Image.open(Path(spec.origin).parent / photo.file).convert("RGB"))


def pan(image: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A camera pan with a slow zoom across `image`: uint8 [frames, 240, 320, 3]."""
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    zoom0, zoom1 = rng.uniform(0.6, 0.8), rng.uniform(0.75, 0.95)
    x0, x1 = rng.uniform(0, 1, size=2)
    y0, y1 = rng.uniform(0, 1, size=2)
    out = []
    for t in np.linspace(0, 1, frames):
        zoom = zoom0 + (zoom1 - zoom0) * t
        ch, cw = zoom * h, min(w, zoom * h * SIZE[0] / SIZE[1])
        left = (x0 + (x1 - x0) * t) * (w - cw)
        top = (y0 + (y1 - y0) * t) * (h - ch)
        out.append(np.asarray(pil.resize(SIZE, Image.BILINEAR, box=(left, top, left + cw, top + ch))))
    return np.stack(out)


def videos(seed: int = 0) -> list[list[int]]:
    """Scene lists: every photo alone, 9 ordered pairs, 6 triples (fixed by the seed)."""
    rng = np.random.default_rng(seed)
    n = len(PHOTOS)
    pairs = list(itertools.permutations(range(n), 2))
    triples = list(itertools.permutations(range(n), 3))
    chosen_pairs = [list(pairs[i]) for i in rng.choice(len(pairs), 9, replace=False)]
    chosen_triples = [list(triples[i]) for i in rng.choice(len(triples), 6, replace=False)]
    return [[i] for i in range(n)] + chosen_pairs + chosen_triples


def names(answer: str, photo: Photo) -> bool:
    text = answer.lower()
    return any(re.search(rf"\b{re.escape(word)}", text) for word in photo.accepted)


def questions(scenes: list[int], rng: np.random.Generator) -> list[tuple[str, str, object]]:
    """(kind, question, truth) of one video."""
    photos = [PHOTOS[i] for i in scenes]
    out = [("what", "What is shown in the video?", photos)]
    shown = photos[int(rng.integers(len(photos)))]
    out.append(("exists", f"Is there {article(shown.word)} in the video?", "yes"))
    absent = [p for p in PHOTOS if p not in photos and not any(names(p.word, q) for q in photos)]
    other = absent[int(rng.integers(len(absent)))]
    out.append(("exists", f"Is there {article(other.word)} in the video?", "no"))
    if len(photos) > 1:
        out.append(("first", "What appears first in the video?", (photos[0], photos[1:])))
        out.append(("last", "What appears last in the video?", (photos[-1], photos[:-1])))
        i = int(rng.integers(len(photos)))
        centre = (i + 0.5) / len(photos)
        out.append(("when", f"When does the {photos[i].word} appear in the video?",
                    ("beginning", "middle", "end")[min(2, int(centre * 3))]))
    return out


def correct(kind: str, truth, answer: str) -> bool:
    text = answer.lower()
    if kind == "what":
        return all(names(answer, p) for p in truth)
    if kind == "exists":
        return text.strip().startswith(truth)
    if kind in ("first", "last"):
        target, others = truth
        return names(answer, target) and not any(names(answer, p) for p in others if p != target)
    return truth in text


def evaluate(model: VoCoModel, max_new_tokens: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pixels = {i: photo_pixels(p) for i, p in enumerate(PHOTOS)}
    scores = {"model": {k: [] for k in KINDS}, "question_only": {k: [] for k in KINDS}}
    samples, started, frames_seen, grey = [], time.perf_counter(), 0, None
    for scenes in videos(seed):
        frames = np.concatenate([pan(pixels[i], int(FPS * SCENE_SECONDS), rng) for i in scenes])
        indices = split_indices(len(frames), FPS, model.voco.segment_seconds, model.voco.frames_per_segment)
        segments = [frames[idx] for idx in indices]
        frames_seen += sum(len(s) for s in segments)
        caches = model.compress(segments)
        grey = grey if grey is not None else model.compress([np.full_like(segments[0], 128)])[0]
        blank = [grey] * len(segments)  # caches are position-free: one grey segment serves every place
        for kind, question, truth in questions(scenes, rng):
            said = model.answer(question, caches, max_new_tokens=max_new_tokens)
            blind = model.answer(question, blank, max_new_tokens=max_new_tokens)
            scores["model"][kind].append(correct(kind, truth, said))
            scores["question_only"][kind].append(correct(kind, truth, blind))
            samples.append({"video": [PHOTOS[i].word for i in scenes], "kind": kind, "question": question,
                            "answer": said, "question_only": blind, "correct": scores["model"][kind][-1]})
    result = {"videos": len(videos(seed)), "segment_frames": frames_seen,
              "seconds": round(time.perf_counter() - started, 1)}
    for who, per_kind in scores.items():
        accuracy = {k: round(float(np.mean(v)), 3) for k, v in per_kind.items() if v}
        result[who] = {"accuracy": accuracy, "count": {k: len(v) for k, v in per_kind.items() if v},
                       "average": round(float(np.mean(list(accuracy.values()))), 3)}
    result["samples"] = samples
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="bundled model name or checkpoint folder")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", help="write every question, answer and baseline answer to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VoCoModel.from_pretrained(args.model)
    result = evaluate(model, args.max_new_tokens, args.seed)
    samples = result.pop("samples")
    if args.samples:
        Path(args.samples).write_text(json.dumps(samples, indent=1))
    for who in ("model", "question_only"):
        r = result[who]
        print(f"{who:>14}: average {r['average']:.3f} | " + " ".join(f"{k}={v:.2f}" for k, v in r["accuracy"].items()),
              file=sys.stderr)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"checkpoint": args.model, **result, "peak_rss_mb": round(peak_mb)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
