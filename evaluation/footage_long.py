"""One-hour videos of held-out footage: "When does X show up?" when X's 12-second scene is somewhere in an hour.

Each hour is 300 scenes of 12 s (6 segments each): one scene of the target photo at a random place, the other 299
pans over photos that show nothing the target's labels name. A photo's pans are rendered a few times (`variants`)
and compressed once each; an hour reuses them (caches are position-free, so a reused cache is exactly what
compressing the same frames again would give). Questions are answered as the app answers them: the segments most
relevant to the question (the model's own search vectors, `voco.search`), each with its neighbours and a uniform
sketch, kept in time order, through `voco.session.AnswerSession`.

Judged: a "when" answer is right when it names a time inside the target's scene; every answer (when, what, exists)
is checked for degeneration (a fragment repeated three or more times).
"""

from __future__ import annotations

import re
import time

import numpy as np

from evaluation.footage import FPS, Footage, FootageSet, pan, photo_pixels
from evaluation.footage_qa import EXISTS, WHAT, WHEN, article, clock_times

SCENE_SECONDS, SCENES_PER_HOUR = 12, 300


def degenerate(answer: str) -> bool:
    """A fragment (between commas, full stops or line breaks) or a phrase of 2-4 words repeated 3+ times."""
    text = answer.lower()
    fragments = [f.strip() for f in re.split(r"[,.\n;]+", text) if f.strip()]
    if any(fragments.count(f) >= 3 for f in set(fragments)):
        return True
    words = re.findall(r"[a-z0-9:']+", text)
    for n in (2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if any(grams.count(g) >= 3 for g in set(grams)):
            return True
    return False


class PanBank:
    """`variants` rendered pans (12 s, 6 segments) per photo, compressed once, with their search vectors."""

    def __init__(self, model, photos: tuple[Footage, ...], variants: int, seed: int):
        from voco.search import embedder_for
        from voco.segments import split_frames

        rng = np.random.default_rng(seed)
        self.embedder = embedder_for(model)
        self.caches: dict[tuple[str, int], list] = {}
        self.vectors: dict[tuple[str, int], np.ndarray] = {}
        for photo in photos:
            pixels = photo_pixels(photo)
            for v in range(variants):
                frames = pan(pixels, FPS * SCENE_SECONDS, rng)
                segments = split_frames(frames, FPS, model.voco.segment_seconds, model.voco.frames_per_segment)
                caches = model.compress(segments)
                self.caches[photo.id, v] = caches
                self.vectors[photo.id, v] = self.embedder.segment_vectors(caches, frames=segments)


def hour_plan(target: Footage, photos: tuple[Footage, ...], variants: int,
              rng: np.random.Generator) -> tuple[list[tuple[str, int]], int]:
    """The hour's scenes as (photo id, variant), and the target scene's index."""
    taboo = {*target.subject, *target.present, target.refer.split()[-1]}
    fillers = [p for p in photos if p.id != target.id and not taboo & p.mentioned]
    where = int(rng.integers(SCENES_PER_HOUR))
    scenes = [(fillers[int(rng.integers(len(fillers)))].id, int(rng.integers(variants)))
              for _ in range(SCENES_PER_HOUR)]
    scenes[where] = (target.id, int(rng.integers(variants)))
    return scenes, where


def evaluate_long(model, footage: FootageSet, targets: int = 8, variants: int = 3, max_segments: int = 64,
                  seed: int = 0, max_new_tokens: int = 32, log=print) -> dict:
    """`targets` one-hour videos (one per target photo), three questions each; see the module doc."""
    from voco.search import video_scores
    from voco.session import AnswerSession, RetrievedSegments, Timeline

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    bank = PanBank(model, footage.photos, variants, seed)
    chosen = [footage.photos[i] for i in rng.choice(len(footage.photos), size=targets, replace=False)]
    selector = RetrievedSegments(max_segments=max_segments)
    results, samples = {"when": [], "degenerate": []}, []
    seconds = model.voco.segment_seconds
    for target in chosen:
        scenes, where = hour_plan(target, footage.photos, variants, rng)
        caches = [c for key in scenes for c in bank.caches[key]]
        vectors = np.concatenate([bank.vectors[key] for key in scenes])
        timeline = Timeline.of(caches, [(i * seconds, (i + 1) * seconds) for i in range(len(caches))])
        span = (where * SCENE_SECONDS, (where + 1) * SCENE_SECONDS)
        asked = [("when", WHEN[int(rng.integers(len(WHEN)))].format(the=target.refer)),
                 ("what", WHAT[0]), ("exists", EXISTS[0].format(a=article(target.seen["noun"][0])))]
        for kind, question in asked:
            scores = video_scores(vectors, bank.embedder.query_vector(question), bank.embedder.novelty_weight)
            answer, stats = AnswerSession(model, timeline, selector).answer(question, scores,
                                                                            max_new_tokens=max_new_tokens)
            if kind == "when":
                results["when"].append(any(span[0] <= t <= span[1] for t in clock_times(answer)))
            results["degenerate"].append(degenerate(answer))
            samples.append({"target": target.id, "scene_s": span, "kind": kind, "question": question,
                            "answer": answer, "segments": len(stats.segments_used),
                            "target_segments_used": sum(span[0] <= s.start_s < span[1] for s in stats.segments_used),
                            "ttft_ms": round(stats.ttft_ms, 1)})
            log(f"  {target.id} @ {span[0] // 60}:{span[0] % 60:02d} {kind}: {question!r} -> {answer!r}")
    return {"hours": len(chosen), "when_in_scene": round(float(np.mean(results["when"])), 3),
            "degenerate": f"{sum(results['degenerate'])}/{len(results['degenerate'])}",
            "seconds": round(time.perf_counter() - started, 1), "samples": samples}
