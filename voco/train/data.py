"""Batches from the synthetic world: videos -> segment frames (the ingest sampling rule) + QA token ids.

A training step reads `videos_per_batch` whole videos. Every video is cut into segments with
`voco.segments.split_frames` (the rule ingest uses), all its questions ride on the same segment caches,
so the cost of compressing a video is shared by its ~6 questions.

The train stream is a pure function of (seed, step, rank): batch `step` of process `rank` holds the videos
at stream positions `(step * world + rank) * B .. + B - 1`, and position p is video `perm_e[p mod N]` of a
seeded per-epoch permutation. Resuming at a step therefore needs no saved iterator state.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from voco.data.questions import QA
from voco.data.synthetic import make_example
from voco.data.world import Video, WorldConfig
from voco.segments import split_indices
from voco.train.probe import segment_targets


@dataclass
class VideoExample:
    video_id: str
    segments: list[np.ndarray]
    """uint8 [F, H, W, 3] per segment, sampled as ingest samples them."""
    qas: list[QA]
    targets: np.ndarray | None = None
    """float32 [segments, probe.TARGETS]: what each segment shows (the cache probe's targets)."""
    histories: list[list[tuple[str, str]]] | None = None
    """Per question: the earlier (question, answer) turns of its conversation (multi-turn chats; their answers
    are trained too); None: every question is single-turn."""
    times: list[float] | None = None
    """Start seconds of each segment (what a model with time labels writes after its cache); None: index *
    the model's segment_seconds."""


@dataclass
class Batch:
    """Videos (their segments flattened) and one row per question: prompt suffix + answer token ids."""

    segments: list[np.ndarray]
    segment_counts: list[int]
    """Segments per video, in order; video v owns segments sum(counts[:v]) .. + counts[v]."""
    prefix_ids: list[int]
    row_video: list[int] = field(default_factory=list)
    row_ids: list[list[int]] = field(default_factory=list)
    """Suffix (question + assistant tag) followed by the answer tokens (incl. the closing </s>)."""
    row_answer_start: list[int] = field(default_factory=list)
    """Index in row_ids of the last turn's first answer token (evaluation decodes from there)."""
    row_answer_spans: list[list[tuple[int, int]]] = field(default_factory=list)
    """[start, end) in row_ids of every answer of the row (the tokens the loss is on; one span unless the row
    is a multi-turn conversation)."""
    row_types: list[str] = field(default_factory=list)
    row_answers: list[str] = field(default_factory=list)
    row_questions: list[str] = field(default_factory=list)
    segment_targets: np.ndarray | None = None
    """[len(segments), probe.TARGETS] when every example has them (train batches), else None."""
    segment_starts: list[list[float] | None] = field(default_factory=list)
    """Per video its segments' start seconds (`VideoExample.times`), None where unknown (index * the model's
    segment_seconds): the time labels of a model with `prompt.segment_label`."""

    @property
    def num_questions(self) -> int:
        return len(self.row_ids)


CAPTION_QUESTION = "describe the video."
CAPTION_TYPE = "caption"


def caption(video: Video) -> str:
    """Every object in order of appearance: colour, shape, start region, motion (and the colour it turns)."""
    parts = []
    for obj in sorted(video.objects, key=lambda o: o.enter_frame):
        text = f"{obj.color} {obj.shape} {obj.start_region} {obj.direction}"
        if obj.new_color is not None:
            text += f" turns {obj.new_color}"
        parts.append(text)
    return ", ".join(parts) if parts else "nothing"


def load_video(split: str, index: int, *, world: WorldConfig, base_seed: int, questions_per_video: int,
               frames_per_segment: int, segment_seconds: float, captions: bool = False,
               probe_targets: bool = False) -> VideoExample:
    """One video cut into segments, with its questions (+ a caption question when `captions`, + what each
    segment shows when `probe_targets`, for the cache probe)."""
    video, qas = make_example(split, index, base_seed, world, questions_per_video)
    indices = split_indices(video.num_frames, video.fps, segment_seconds, frames_per_segment)
    qas = list(qas)
    if captions:
        qas.append(QA(CAPTION_QUESTION, caption(video), CAPTION_TYPE))
    targets = np.stack([segment_targets(video, idx) for idx in indices]) if probe_targets else None
    times = [i * segment_seconds for i in range(len(indices))]  # segment i spans [i * S, (i + 1) * S)
    return VideoExample(video.video_id, [video.frames[idx] for idx in indices], qas, targets, times=times)


def history_answer_spans(model, history: Sequence[tuple[str, str]], question: str,
                         suffix: list[int]) -> list[tuple[int, int]]:
    """[start, end) token spans of the history's answers in `suffix` = `model.prompt_ids(question, history)[1]`.

    The suffix is the text `prompt_ids` builds (earlier turns, then the question), tokenised as one string, as
    at inference; an answer token is one whose characters overlap the answer's ` {answer}{answer_end}`."""
    p = model.voco.prompt
    text, chars = "", []
    for i, (q, a) in enumerate([*history, (question, None)]):
        text += (p.question if i == 0 else p.followup).format(question=q)
        if a is not None:
            chars.append((len(text), len(text) + len(f" {a}{p.answer_end}")))
            text += f" {a}{p.answer_end}"
    if not model.tokenizer.is_fast:
        raise ValueError("multi-turn training needs a fast tokenizer (token offsets); this one is not")
    encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"]) != list(suffix):
        raise ValueError("the conversation text no longer matches VoCoModel.prompt_ids; keep the two in step")
    spans = []
    for lo, hi in chars:
        inside = [i for i, (s, e) in enumerate(encoded["offset_mapping"]) if s < hi and e > lo]
        if inside:
            spans.append((inside[0], inside[-1] + 1))
    return spans


def encode(model, examples: Sequence[VideoExample]) -> Batch:
    """Token ids for every question of `examples` (the model's prompt template); a question with a history is
    one row holding the whole conversation, with the loss on every answer."""
    segments, counts = [], []
    prefix_ids = None
    batch = Batch(segments, counts, [])
    for v, example in enumerate(examples):
        segments.extend(example.segments)
        counts.append(len(example.segments))
        if example.times is not None and len(example.times) != len(example.segments):
            raise ValueError(f"video {example.video_id}: {len(example.segments)} segments but "
                             f"{len(example.times)} start times")
        batch.segment_starts.append(None if example.times is None else [float(t) for t in example.times])
        histories = example.histories or [[] for _ in example.qas]
        for qa, history in zip(example.qas, histories, strict=True):
            prefix, suffix = model.prompt_ids(qa.question, history)
            if prefix_ids is None:
                prefix_ids = prefix
            elif prefix != prefix_ids:  # single-turn prompts share the prefix; fail loudly if a template varies
                raise ValueError("questions of one batch have different prompt prefixes")
            answer = model.answer_ids(qa.answer)
            spans = history_answer_spans(model, history, qa.question, suffix) if history else []
            batch.row_video.append(v)
            batch.row_ids.append(suffix + answer)
            batch.row_answer_start.append(len(suffix))
            batch.row_answer_spans.append([*spans, (len(suffix), len(suffix) + len(answer))])
            batch.row_types.append(qa.type)
            batch.row_answers.append(qa.answer)
            batch.row_questions.append(qa.question)
    if prefix_ids is None:
        raise ValueError("a batch needs at least one question")
    batch.prefix_ids = prefix_ids
    if all(e.targets is not None for e in examples):
        batch.segment_targets = np.concatenate([e.targets for e in examples])
    return batch


class TrainStream:
    """Deterministic train batches: `batch(step)` depends only on (seed, step, rank, world size)."""

    def __init__(self, *, num_videos: int, videos_per_batch: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_videos = num_videos
        self.videos_per_batch = videos_per_batch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence(entropy=self.seed, spawn_key=(epoch,)))
            self._perm = (epoch, rng.permutation(self.num_videos))
        return self._perm[1]

    def indices(self, step: int) -> list[int]:
        start = (step * self.world_size + self.rank) * self.videos_per_batch
        out = []
        for position in range(start, start + self.videos_per_batch):
            epoch, offset = divmod(position, self.num_videos)
            out.append(int(self._permutation(epoch)[offset]))
        return out


class Prefetcher:
    """Renders the videos of upcoming steps in background threads (numpy releases the GIL while drawing)."""

    def __init__(self, load, stream: TrainStream, first_step: int, last_step: int, workers: int, depth: int = 4):
        self.load, self.stream = load, stream
        self.steps = iter(range(first_step, last_step))
        self.workers = workers
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._threads: list[threading.Thread] = []
        self._next = first_step
        self._last = last_step
        self._depth = depth
        if workers > 0:
            self._lock = threading.Lock()
            self._results: dict[int, list[VideoExample]] = {}
            self._cond = threading.Condition()
            for _ in range(workers):
                t = threading.Thread(target=self._work, daemon=True)
                t.start()
                self._threads.append(t)

    def _work(self) -> None:
        while True:
            with self._lock:
                step = next(self.steps, None)
            if step is None:
                return
            with self._cond:
                self._cond.wait_for(lambda s=step: s < self._next + self._depth)
            examples = [self.load(i) for i in self.stream.indices(step)]
            with self._cond:
                self._results[step] = examples
                self._cond.notify_all()

    def __iter__(self) -> Iterator[list[VideoExample]]:
        while self._next < self._last:
            if self.workers == 0:
                examples = [self.load(i) for i in self.stream.indices(self._next)]
            else:
                with self._cond:
                    self._cond.wait_for(lambda: self._next in self._results)
                    examples = self._results.pop(self._next)
            self._next += 1
            if self.workers:
                with self._cond:
                    self._cond.notify_all()
            yield examples
