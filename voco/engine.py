"""The answer engine: a bounded line in front of one running `voco.batching.Batch`, decoded by a worker thread
while there is work (the app's way of answering many people at once; `AnswerSession` alone uses
`voco.batching.decode_alone`)."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from voco.batching import DONE, Batch, Cancelled, Job, Waiting, use_row_attention

# ---- the engine: a queue in front of one running batch ------------------------------------------------

@dataclass(frozen=True)
class EngineConfig:
    """How many requests an `AnswerEngine` decodes together and lets wait."""

    max_batch: int = 16
    """Requests decoding together (one forward per step for all of them); more wait in line."""
    max_queue: int = 64
    """Requests waiting for a place in the batch; one more is refused with `EngineBusy`."""
    row_tile: int | None = None
    """None: fastest (a batched row may differ from the same request alone in the last bits of its logits);
    T: every decoding forward runs its linear layers in T-row calls, so answers never depend on the batch."""

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {self.max_batch} and {self.max_queue}")
        if self.row_tile is not None and self.row_tile < 1:
            raise ValueError(f"row_tile must be >= 1 or None, got {self.row_tile}")


class EngineBusy(RuntimeError):
    """The batch and the line are full: try again in a moment."""


class Ticket:
    """A submitted request: iterate for its events (`Waiting`, then the job's pieces; an error is raised);
    stopping early, or `cancel`, frees its place."""

    def __init__(self, engine: AnswerEngine, job: Job):
        self.engine = engine
        self.job = job
        self.position: int | None = None
        self.done = False
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        job.out = self._events.put

    def __iter__(self) -> Iterator[object]:
        try:
            while True:
                event = self._events.get()
                if event is DONE:
                    self.done = True
                    return
                if isinstance(event, BaseException):
                    self.done = True
                    raise event
                yield event
        finally:
            if not self.done:
                self.cancel()

    def cancel(self) -> None:
        self.engine.cancel(self)


class AnswerEngine:
    """A bounded line in front of one running `Batch`, decoded by a worker thread that runs while there is work.

    `submit` never blocks: the request waits in line (its ticket hears its place) until the batch has room, then is
    placed and joins between two steps; past `max_batch + max_queue` requests in flight it raises `EngineBusy`.
    """

    def __init__(self, model, config: EngineConfig | None = None):
        self.model = model
        self.config = config or EngineConfig()
        if self.config.max_batch > 1:
            use_row_attention(model.lm)  # now, not while other threads may be running the model
        self._lock = threading.Lock()
        self._waiting: deque[Ticket] = deque()
        self._active = 0
        self._worker: threading.Thread | None = None

    def load(self) -> tuple[int, int]:
        """(requests decoding, requests waiting) right now."""
        with self._lock:
            return self._active, len(self._waiting)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is decoding or waiting and the worker thread has ended; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                worker = self._worker
            if worker is None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            worker.join(left)

    def submit(self, job: Job) -> Ticket:
        ticket = Ticket(self, job)
        cfg = self.config
        with self._lock:
            if self._active + len(self._waiting) >= cfg.max_batch + cfg.max_queue:
                raise EngineBusy(f"busy: {self._active} questions are being answered and {len(self._waiting)} are "
                                 "waiting; try again in a moment")
            self._waiting.append(ticket)
            self._announce()
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="voco-batch", daemon=True)
                self._worker.start()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Withdraw a waiting request now, or free a decoding one's slot at the next step."""
        ticket.job.cancel()
        with self._lock:
            if ticket not in self._waiting:
                return  # decoding (the batch ends it) or already ended
            self._waiting.remove(ticket)
            self._announce()
        ticket.job.end(Cancelled())

    def _announce(self) -> None:
        """Tell each waiting request its place when it changed (under the lock); those the batch has room for join
        at the worker's next turn and hear nothing until they do."""
        free = max(0, self.config.max_batch - self._active)
        for index, ticket in enumerate(self._waiting):
            place = index + 1 - free
            if place >= 1 and ticket.position != place:
                ticket.position = place
                ticket.job.out(Waiting(place))

    def _work(self) -> None:
        batch = Batch(self.model, self.config.row_tile)
        while True:
            with self._lock:
                free = self.config.max_batch - len(batch)
                joining = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
                self._active = len(batch) + len(joining)
                if not self._active:
                    self._worker = None  # the next submit starts another
                    return
                self._announce()
            for ticket in joining:
                ticket.position = 0
                ticket.job.out(Waiting(0))
                batch.add(ticket.job)  # placed one request at a time; the questions run in the next step
            batch.step()
