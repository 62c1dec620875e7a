"""Settings of one ingest run (the CLI fills this from its flags; the app builds it directly)."""

from __future__ import annotations

from dataclasses import dataclass

from store.claims import DEFAULT_LEASE_S
from store.quant import CACHE_DTYPES, check_cache_dtype  # noqa: F401 (CACHE_DTYPES: the CLI's choices)
from voco.video import VIDEO_EXTENSIONS  # noqa: F401 (ingest's name for it)

DECODERS = ("auto", "pyav", "decord")
DTYPES = ("float32", "bfloat16", "float16")


class UsageError(ValueError):
    """Bad arguments (e.g. a path that does not exist); nothing was done."""


@dataclass(frozen=True)
class IngestConfig:
    segment_seconds: float | None = None
    """Length of a segment; None: the model's voco.json `segment_seconds`."""
    batch_size: int = 8
    """Segments per `model.compress` call."""
    chunk_segments: int = 64
    """Compressed segments held in memory until they are written as one chunk file (fsync + one
    transaction): whole model batches, flushed once at least this many are held and at a video's end.
    The most work a kill can lose (Ctrl-C writes what is held); fewer, larger chunks keep the store's
    cost off the pipeline."""
    queue_batches: int = 2
    """Decoded batches waiting for the model at most (bounds memory; decoding runs ahead by this much)."""
    decode_max_side: int | None = None
    """Decoded frames are downscaled to at most this many pixels per side before the model resizes them
    to its square image_size; None: 2x the model's image_size (what the model sees barely changes);
    0: keep the native resolution."""
    decoder: str = "auto"
    """Video decoder: `auto` (decord when installed, else PyAV; the other is tried when one fails), `pyav` or
    `decord`. (Named `backend` before the executors came; the executor is chosen apart, see ingest/executors.)"""
    max_duration_s: float | None = 24 * 3600.0
    """A video whose timestamps claim a longer duration is refused (with the reason) before any segment is
    planned: a few KB of damaged or crafted metadata can claim weeks, i.e. hours of compute and GBs of
    caches. None: no limit (the plausibility checks in `voco.video.probe` still apply)."""
    max_frame_pixels: int | None = 40_000_000
    """A video whose frames hold more pixels is refused (with the reason) before any frame is decoded: one
    16000x16000 frame takes 2.6 GB as it decodes. The default passes 8K (7680x4320, 33 MP). None: no limit."""
    max_segments: int | None = 7200
    """A video planned as more segments is refused (with the count, the cache size and the model time it would
    take) before any frame is decoded: 500 KB of black frames can last ten hours, 18,000 segments. The default
    passes four hours of 2-second segments. None: no limit."""
    thumbnail_side: int = 160
    """Longest side of the per-segment JPEG thumbnail."""
    lease_s: float = DEFAULT_LEASE_S
    """A claim whose heartbeat is older than this is taken over by another process."""
    wait_for_others: bool = True
    """When another live process is ingesting a video we were also given, wait for it (and take over
    if it dies) so our summary is final; False reports it as failed ('busy') at once."""
    poll_s: float = 1.0
    """How often to look at videos held by other processes."""
    torch_threads: int | None = None
    """torch intra-op threads for the model (process-wide); None leaves torch's default. On a small or
    busy machine, fewer threads than cores leaves room for the decoder thread (and 1 is fastest for
    tiny models)."""
    device: str = "cpu"
    """torch device the model runs on (`cuda`, `cuda:1`, ...); caches are moved to the CPU as they are stored."""
    dtype: str | None = None
    """Model weights' dtype (`float32`, `bfloat16`, `float16`); None: the checkpoint's own. It changes the cache
    bytes, so it is part of the model's identity: a store keeps bf16 and fp32 caches of one video apart."""
    compressor: str | None = None
    """How a segment is cached (a registered compressor: voco, full, pool, ...); None: the checkpoint's voco.json
    (voco for a plain checkpoint). `full` or `pool` answer zero-shot from a stock checkpoint's own vision tokens.
    Part of the model's identity: caches of two compressors never mix."""
    k: int | None = None
    """Tokens kept per segment (voco, pool); None: the checkpoint's."""
    cache_dtype: str = "model"
    """How caches are stored (one of `CACHE_DTYPES`): `model` keeps them as computed, in the model's dtype; `int8`
    stores a quarter of float32's bytes (symmetric absmax int8 per head_dim vector with a float16 scale,
    store/quant.py), read back in the model's dtype. Part of the stored video's key: a file ingested both ways is
    two videos, never mixed."""
    search_vectors: bool = True
    """Write search vectors beside each finished video's pack (and keep the faiss index in step)."""
    search_embedder: str | None = None
    """Which search vector (a name in voco/search.py `EMBEDDERS`); None: the model's own (`embedder_for`:
    class evidence for a model whose vision tower names classes, else the <voco> keys)."""

    def __post_init__(self) -> None:
        if self.segment_seconds is not None and self.segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be > 0, got {self.segment_seconds}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.chunk_segments < 1:
            raise ValueError(f"chunk_segments must be >= 1, got {self.chunk_segments}")
        if self.queue_batches < 1:
            raise ValueError(f"queue_batches must be >= 1, got {self.queue_batches}")
        if self.decode_max_side is not None and self.decode_max_side < 0:
            raise ValueError(f"decode_max_side must be >= 0, got {self.decode_max_side}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.max_frame_pixels is not None and self.max_frame_pixels <= 0:
            raise ValueError(f"max_frame_pixels must be > 0 (or None: no limit), got {self.max_frame_pixels}")
        if self.max_segments is not None and self.max_segments <= 0:
            raise ValueError(f"max_segments must be > 0 (or None: no limit), got {self.max_segments}")
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be > 0 (or None: no limit), got {self.max_duration_s}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (or None: the checkpoint's), "
                             f"got {self.dtype!r}")
        check_cache_dtype(self.cache_dtype)
        if self.k is not None and self.k < 1:
            raise ValueError(f"k (tokens kept per segment) must be >= 1, got {self.k}")
        if self.thumbnail_side < 16:
            raise ValueError(f"thumbnail_side must be >= 16, got {self.thumbnail_side}")


@dataclass(frozen=True)
class RayConfig:
    """Settings of the Ray executor (`python -m ingest PATH --executor ray`)."""

    address: str | None = None
    """Ray cluster to join: None starts a local Ray on this machine; `auto` joins the running cluster
    (`ray start --head` / a Ray job); or `ray://host:10001`."""
    workers: int = 1
    """Worker actors, each one process with its own model, claims and overlapped decode/compress pipeline."""
    cpus_per_worker: float = 1.0
    """Ray CPUs reserved per worker (Ray places the workers by these)."""
    gpus_per_worker: float = 0.0
    """Ray GPUs reserved per worker (e.g. 1 on GPU nodes; the model then runs there)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
