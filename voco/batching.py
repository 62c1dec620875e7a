"""Batched answering: many questions share one LM forward per step (continuous batching).

Each request is placed alone, exactly as a single answer is (`voco.generation.place`: the session's segment
selection, the context check, caches placed on the timeline after the prefix, with their time labels), so its past
is its own, with its own length and positions. Requests join the running batch between steps, and every step runs
ONE forward of the LM for all active requests, packed into one sequence:

    tokens [1, N]: each request's pending ones (a newcomer's question, else the token it just chose), N in all,
                   at its own positions [1, N]
      -> q/k/v and output projections, MLPs, LM head: over all N tokens at once (the weights are read once a step)
      -> attention: request b's tokens against its own past plus themselves, unpadded, with the mask it gets alone:
         the very SDPA call answering alone makes (`PackedRows` is the forward's cache and hands each request's
         KV to `row_attention`)
      -> logits [B, vocab] at each request's last token

Nothing is padded and no mask is shared, so a request's attention is bit for bit what it is alone. Each request
then picks its own token (greedy or its own seeded sampler), stops on its own end token, `max_new_tokens` or stop
string, streams its own pieces (`Job.out`), and can be cancelled alone: its slot is freed at the next step.
Placing (the label pass of a model with time labels) is one request at a time, in the engine's thread between
steps; the question passes and all decoding are batched.

Exactness. The linear layers are where a batch can differ from a request alone: BLAS picks its kernel by the
number of rows (MKL: a matrix-vector product for 1 row, 4-row tiles beyond, tails by rows mod 4 and threads), so
a token's logits move in the last bits (~1e-5 on the default model) with how many tokens share the step; greedy
tokens change only where two logits tie that closely. `row_tile=T` makes every forward of answering, alone or
batched, run each product with a weight (linear layers, LoRA adapters' `x @ A.t()`) in calls of exactly T rows
(zero rows pad the last call): a token's bits then depend only on its own inputs, never on who else is in the batch
(tests/voco/test_batching.py holds batched logits bitwise equal to alone ones). It costs: a request alone pays a
T-row product per weight and token.

    engine = AnswerEngine(model, EngineConfig(max_batch=16, max_queue=64))
    ticket = engine.submit(AnswerSession(model, caches).job("what happens?", max_new_tokens=32))
    for event in ticket: ...   # Waiting(position) while in line, then AnswerPiece(text), the last with stats
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from transformers import AttentionInterface, DynamicCache
from transformers.masking_utils import AttentionMaskInterface, create_causal_mask, sdpa_mask

from voco.generation import Row, run_row
from voco.key_bias import READS_KEY_BIAS, key_bias_attention, use_key_bias_attention

log = logging.getLogger(__name__)

__all__ = ["Batch", "Cancelled", "Job", "Waiting",
           "decode_alone", "forward_rows"]

ROWS = "voco_rows"
"""The attention implementation a batching model runs: `row_attention`, which is `key_bias_attention` (plain SDPA
without a key bias) unless the forward brings `voco_rows`."""


# ---- one forward for B requests -----------------------------------------------------------------------

class PackedRows:
    """A step's `cache`: B requests' own caches side by side (never one padded tensor), their pending tokens packed
    into one sequence of N = sum(lengths) tokens.

    transformers calls `update` in every attention layer with the step's new KV [1, kv_heads, N, head_dim]:
    request b's slice goes into its own cache (as `DynamicCache.update` does alone), and the attention reads each
    request's whole past for that layer from `layer_rows`. The mask transformers builds for the packed sequence is
    not read: each request brings the mask it gets alone (`alone_mask`)."""

    def __init__(self, pasts: Sequence[DynamicCache], lengths: Sequence[int], masks: Sequence):
        self.pasts, self.masks = list(pasts), list(masks)
        ends = torch.tensor(lengths).cumsum(0).tolist()
        self.spans = [(end - n, end) for end, n in zip(ends, lengths, strict=True)]  # [B] token slices of [0, N)
        self._rows: tuple[int, list] = (-1, [])

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        rows = [past.update(keys[:, :, s:e], values[:, :, s:e], layer_idx)
                for past, (s, e) in zip(self.pasts, self.spans, strict=True)]
        self._rows = (layer_idx, rows)  # [B] x ([1, kv_heads, L_b + n_b, D] keys, values)
        return keys, values

    def layer_rows(self, layer_idx: int) -> list[tuple]:
        """Each request's (token slice, keys, values, mask, key bias or None) in layer `layer_idx`, just updated."""
        at, rows = self._rows
        if at != layer_idx:
            raise RuntimeError(f"attention of layer {layer_idx} ran before its cache update (last: {at})")
        return [(span, k, v, mask, getattr(past, "key_bias", None))
                for span, (k, v), mask, past in zip(self.spans, rows, self.masks, self.pasts, strict=True)]

    # what transformers' mask code asks of a cache
    def get_query_offset(self, layer_idx: int = 0) -> int:
        return 0

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return query_length, 0


def row_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, **kwargs):
    """With `voco_rows` (a `PackedRows`): request b's queries [1, heads, n_b, D] against its own past alone, with
    its own mask, as it attends alone. Without it: `key_bias_attention` (SDPA, plus a per-layer key bias when a
    ragged cache brings one)."""
    rows = kwargs.pop("voco_rows", None)
    if rows is None:
        return key_bias_attention(module, query, key, value, attention_mask, **kwargs)
    out = [key_bias_attention(module, query[:, :, s:e], k, v, mask, key_bias=bias, **kwargs)[0]
           for (s, e), k, v, mask, bias in rows.layer_rows(module.layer_idx)]  # [B] x [1, n_b, heads, D]
    return torch.cat(out, dim=1), None  # [1, N, heads, D]


def alone_mask(model, row: Row):
    """The attention mask transformers gives `row`'s pending tokens when they run alone after its past: none for
    one token after a plain causal past (the decoding steps), else the causal mask sized to the past."""
    if len(row.pending) == 1:
        return None
    n = len(row.pending)
    shape = torch.empty(1, n, model.lm.config.hidden_size, dtype=model.dtype, device=model.device)
    positions = torch.arange(row.position, row.position + n, device=model.device)[None]
    return create_causal_mask(config=model.lm.config, inputs_embeds=shape, attention_mask=None, cache=row.past,
                              position_ids=positions)


def use_row_attention(lm) -> None:
    """Switch a transformers LM to `row_attention` (idempotent): unchanged answers for every other forward.
    Only SDPA-compatible full-attention decoders: fail otherwise."""
    if lm.config._attn_implementation == ROWS:
        return
    AttentionInterface.register(ROWS, row_attention)
    AttentionMaskInterface.register(ROWS, sdpa_mask)  # prefill and training build the masks SDPA gets
    READS_KEY_BIAS.add(ROWS)
    layer_types = set(getattr(lm.config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        raise ValueError(f"batched decoding needs full-attention layers; this LM has {sorted(layer_types)}: "
                         "answer one request at a time (max_batch=1)")
    use_key_bias_attention(lm)  # refuses attention kernels other than SDPA / eager
    lm.set_attn_implementation(ROWS)


TILED_PRODUCTS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm}
"""Products RowTiles tiles when their right operand is a 2-D weight (e.g. a LoRA adapter's `x @ A.t()`)."""


class RowTiles(TorchFunctionMode):
    """Every product of token rows with a weight (`F.linear`, `x @ W` with a 2-D W) in calls of exactly `rows` rows
    (the last padded with zero rows): a row's result then depends only on its own input, not on how many rows share
    the call (see the module docstring). Other operations run as they are."""

    def __init__(self, rows: int):
        super().__init__()
        self.rows = rows

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            return self.tiled(x, lambda tile: func(tile, weight, bias))
        if func in TILED_PRODUCTS and len(args) == 2 and not kwargs and args[1].dim() == 2 and args[0].dim() >= 2:
            x, weight = args
            return self.tiled(x, lambda tile: func(tile, weight))
        return func(*args, **kwargs)

    def tiled(self, x: torch.Tensor, product) -> torch.Tensor:
        """product over x [..., in] in `rows`-row tiles -> [..., out]."""
        flat = x.reshape(-1, x.shape[-1])  # [M, in]
        M = flat.shape[0]
        if M % self.rows:
            flat = torch.cat((flat, flat.new_zeros(self.rows - M % self.rows, flat.shape[1])))
        out = torch.cat([product(tile) for tile in flat.split(self.rows)])[:M]  # [M, out]
        return out.reshape(*x.shape[:-1], out.shape[-1])


def row_tiles(rows: int | None):
    """`RowTiles(rows)`, or nothing when `rows` is None (each linear in one call, fastest)."""
    return contextlib.nullcontext() if rows is None else RowTiles(rows)


@torch.inference_mode()
def forward_rows(model, rows: Sequence[Row], row_tile: int | None = None) -> None:
    """One forward for B requests: each one's pending tokens at its own positions, after its own past (which grows
    by them); sets each row's logits [vocab] and next position. One request runs `generation.run_row`
    (`VoCoModel.forward_tokens`), the path answering alone takes."""
    with row_tiles(row_tile):
        if len(rows) == 1:
            run_row(model, rows[0])
            return
        use_row_attention(model.lm)
        dev = model.device
        lengths = [len(r.pending) for r in rows]
        ids = torch.tensor([[t for r in rows for t in r.pending]], device=dev)  # [1, N]
        positions = torch.tensor([[r.position + i for r in rows for i in range(len(r.pending))]], device=dev)
        packed = PackedRows([r.past for r in rows], lengths, [alone_mask(model, r) for r in rows])
        last = torch.tensor([e - 1 for _, e in packed.spans], device=dev)  # [B] each request's last token
        out = model.lm(input_ids=ids, position_ids=positions, cache=packed, use_cache=True, logits_to_keep=last,
                       voco_rows=packed)
        logits = out.logits[0].float()  # [B, vocab]
    for row, row_logits, n in zip(rows, logits, lengths, strict=True):
        row.logits, row.position, row.pending = row_logits, row.position + n, []


# ---- requests and the running batch -------------------------------------------------------------------

DONE = object()
"""The last event of every job (after its final piece or its error)."""


class Cancelled(Exception):
    """The request was cancelled before its answer ended."""


@dataclass(frozen=True)
class Waiting:
    """A request's place in line while the batch is full: 1 is next to join; sent whenever it changes, and 0 when
    the request joins the batch."""

    position: int


class Job(ABC):
    """One request on its way through decoding. Whoever runs it sets `out` (where its events go: text pieces, the
    error, `DONE`); `cancel` may come from any thread."""

    def __init__(self) -> None:
        self.out: Callable[[object], None] = lambda event: None
        self.cancelled = threading.Event()

    @abstractmethod
    def place(self) -> Row:
        """The request's own past, its first pending tokens (`voco.generation.place`); raises what answering alone
        raises (the context check, ...)."""

    @abstractmethod
    def take(self, logits: torch.Tensor) -> int | None:
        """Pick the next token from logits [vocab], hand out what it adds; None: the answer has ended."""

    @abstractmethod
    def finish(self) -> None:
        """Hand out the last piece (e.g. with the stats)."""

    def cancel(self) -> None:
        self.cancelled.set()

    def end(self, error: BaseException | None = None) -> None:
        """The final piece (or the error), then `DONE`."""
        try:
            if error is None:
                self.finish()
            else:
                self.out(error)
        except Exception as err:  # noqa: BLE001 - a bug in one job's stats must still end its stream
            self.out(err)
        self.out(DONE)


class Batch:
    """The running batch: placed jobs running together, one forward per `step`. No threads: `AnswerEngine` drives
    one for many callers, `decode_alone` one for a single answer."""

    def __init__(self, model, row_tile: int | None = None):
        if row_tile is not None and row_tile < 1:
            raise ValueError(f"row_tile must be >= 1 or None, got {row_tile}")
        self.model = model
        self.row_tile = row_tile
        self.rows: list[tuple[Job, Row]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, job: Job) -> None:
        """Place `job` (alone) so its question runs in the next step; a failed placement ends it with its error."""
        if job.cancelled.is_set():
            job.end(Cancelled())
            return
        try:
            row = job.place()
        except Exception as err:  # noqa: BLE001 - the request's own error (context too long, ...), not the batch's
            job.end(err)
            return
        self.rows.append((job, row))

    def step(self) -> None:
        """Each job that has logits picks its token; then one forward runs every job's pending tokens."""
        going: list[tuple[Job, Row]] = []
        for job, row in self.rows:
            if job.cancelled.is_set():
                job.end(Cancelled())
                continue
            if row.logits is not None:  # not a newcomer: its next token
                try:
                    token = job.take(row.logits)
                except Exception as err:  # noqa: BLE001
                    job.end(err)
                    continue
                if token is None:
                    job.end()
                    continue
                row.pending = [token]
            going.append((job, row))
        self.rows = going
        if not going:
            return
        try:
            forward_rows(self.model, [row for _, row in going], self.row_tile)
        except Exception as err:  # noqa: BLE001 - every request of this forward fails with it; the batch goes on empty
            log.exception("a batched answering step failed")
            for job, _ in going:
                job.end(err)
            self.rows = []


def decode_alone(model, job: Job, row_tile: int | None = None) -> Iterator[object]:
    """Run one job with nobody else in its batch, in the caller's thread: the steps the engine takes, its events
    yielded as they come (an error is raised)."""
    events: deque = deque()
    job.out = events.append
    batch = Batch(model, row_tile)
    batch.add(job)
    while True:
        while events:
            event = events.popleft()
            if event is DONE:
                return
            if isinstance(event, BaseException):
                raise event
            yield event
        batch.step()
