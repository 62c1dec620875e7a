"""Cache pack files: many segments' `SegmentCache`s stacked in one safetensors file, read into memory.

A pack holds two tensors and string metadata (no pickle anywhere):

    kv               [T, layers, 2, kv_heads, k, head_dim]  model dtype; segment t's caches, stacked
    source_position  [T] int64                              each segment's canonical position
    __metadata__     format=voco-cache-pack/1, fingerprint, compressor, k, plus the writer's fields

An int8 pack (a video ingested with --cache-dtype int8) stores kv as int8 [T, layers, 2, kv_heads, k, head_dim + 2]:
each vector's values and then its float16 scale (store/quant.py), and says so in its metadata (cache_dtype=int8,
kv_dtype: the model dtype it reads back as). Packs of caches stored as computed carry no such keys.

Segment t's kv bytes are one contiguous slice of the file (row-major stacking), so a database row
can point at it with (file, byte offset, size, checksum), and a whole video loads with one read per
tensor (`read_pack`; not mmap: see there why). The same format serves the per-batch chunk files
written while a video is being ingested and the consolidated per-video pack (see store/writer.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from store.files import TEMP_MARK, checksum, fsync_dir, temp_path  # noqa: F401 (re-exported)
from store.quant import MODEL, decode_kv, encode_kv, pack_cache_dtype

PACK_FORMAT = "voco-cache-pack/1"
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
}


@dataclass(frozen=True)
class Slice:
    """Where one segment's kv bytes lie inside a pack file."""

    offset: int
    nbytes: int
    checksum: str


@dataclass(frozen=True)
class FileStamp:
    """Which file, as it was when read: a different inode, size or mtime is a different file."""

    device: int
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Pack:
    """A pack file read into memory: `kv` and `source_positions` are private copies of its tensors."""

    path: Path
    kv: torch.Tensor  # [T, layers, 2, kv_heads, k, head_dim] as stored (int8 packs: see the module doc)
    source_positions: torch.Tensor  # [T] int64
    metadata: dict[str, str]
    kv_data_offset: int  # file offset of kv[0]
    stamp: FileStamp

    @property
    def cache_dtype(self) -> str:
        return pack_cache_dtype(self.metadata)

    def decoded_kv(self) -> torch.Tensor:
        """kv in the model's dtype (int8 packs dequantized; ValueError when the metadata does not fit kv)."""
        return decode_kv(self.kv, self.metadata)

    @property
    def segment_nbytes(self) -> int:
        return self.kv[0].numel() * self.kv.element_size() if len(self.kv) else 0

    def slice_of(self, t: int) -> tuple[int, int]:
        """(offset, nbytes) of segment t's kv bytes in the file."""
        return self.kv_data_offset + t * self.segment_nbytes, self.segment_nbytes


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor (any dtype, bf16 included), as the file stores them."""
    return memoryview(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())


def write_pack(path: Path, kv: torch.Tensor, source_positions: Sequence[int], metadata: dict[str, str]) -> list[Slice]:
    """Write a pack atomically (temp file, fsync, os.replace); returns each segment's slice."""
    if kv.dim() != 6 or kv.shape[2] != 2:
        raise ValueError(f"pack kv must be [T, layers, 2, kv_heads, k, head_dim], got {tuple(kv.shape)}")
    if len(source_positions) != kv.shape[0]:
        raise ValueError(f"{len(source_positions)} source positions for {kv.shape[0]} segments")
    kv = kv.detach().contiguous().cpu()
    meta = {**{k: str(v) for k, v in metadata.items()}, "format": PACK_FORMAT}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        save_file({"kv": kv, "source_position": torch.tensor(list(source_positions), dtype=torch.int64)},
                  str(tmp), metadata=meta)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        with open(tmp, "rb") as handle:
            header = _parse_header(handle, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    data_start = header.kv_data_offset
    per = kv[0].numel() * kv.element_size() if len(kv) else 0
    return [Slice(data_start + t * per, per, checksum(tensor_bytes(kv[t]))) for t in range(kv.shape[0])]


def _read_header(handle, path: Path, size: int) -> tuple[int, dict]:
    head = handle.read(8)
    if len(head) < 8:
        raise ValueError(f"{path} is not a cache pack (shorter than a safetensors header)")
    header_len = int.from_bytes(head, "little")
    if header_len <= 0 or header_len > min(100_000_000, size - 8):
        raise ValueError(f"{path} is not a cache pack (bad safetensors header length {header_len}, file has "
                         f"{size} bytes)")
    raw = handle.read(header_len)
    try:
        return header_len, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a cache pack (unreadable header: {err})") from err


@dataclass(frozen=True)
class PackHeader:
    """A pack's header, checked against the file's size (cheap: reads only the header)."""

    path: Path
    stamp: FileStamp
    metadata: dict[str, str]
    tensors: dict[str, tuple[torch.dtype, list[int], int, int]]  # name -> dtype, shape, file begin, file end

    @property
    def kv_data_offset(self) -> int:
        return self.tensors["kv"][2]


def _tensor_entry(path: Path, header: dict, name: str, base: int, size: int) -> tuple[torch.dtype, list[int], int, int]:
    info = header.get(name)
    if not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
        raise ValueError(f"{path} is not a cache pack (no readable tensor {name!r})")
    dtype, shape = _DTYPES[info["dtype"]], [int(d) for d in info["shape"]]
    begin, end = (int(x) for x in info["data_offsets"])
    numel = 1
    for d in shape:
        numel *= d
    if end - begin != numel * torch.empty((), dtype=dtype).element_size() or begin < 0:
        raise ValueError(f"{path} is damaged: tensor {name!r} has {end - begin} bytes for shape {shape}")
    if base + end > size:
        raise ValueError(f"{path} is truncated: tensor {name!r} ends at byte {base + end}, file has {size}")
    return dtype, shape, base + begin, base + end


def _parse_header(handle, path: Path, fmt: str = PACK_FORMAT, names: tuple[str, ...] = ("kv", "source_position")
                  ) -> PackHeader:
    st = os.fstat(handle.fileno())
    header_len, header = _read_header(handle, path, st.st_size)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != fmt:
        raise ValueError(f"{path} is not a VoCo cache pack (format {meta.get('format')!r}, want {fmt!r})")
    base = 8 + header_len
    tensors = {name: _tensor_entry(path, header, name, base, st.st_size) for name in names}
    stamp = FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return PackHeader(path, stamp, meta, tensors)


def read_pack_header(path: Path, fmt: str = PACK_FORMAT, names: tuple[str, ...] = ("kv", "source_position")
                     ) -> PackHeader:
    """The pack's header and layout checked against the file size; ValueError (naming the file) when not."""
    with open(path, "rb") as handle:
        return _parse_header(handle, path, fmt, names)


def _read_tensor(handle, path: Path, entry: tuple[torch.dtype, list[int], int, int]) -> torch.Tensor:
    dtype, shape, begin, end = entry
    out = torch.empty(shape, dtype=dtype)
    if end == begin:
        return out
    view = memoryview(out.reshape(-1).view(torch.uint8).numpy())
    handle.seek(begin)
    got = 0
    while got < len(view):
        n = handle.readinto(view[got:])
        if not n:
            raise ValueError(f"{path} is truncated: it ended at byte {begin + got} while reading, the header "
                             f"says {end}")
        got += n
    return out


def read_pack(path: Path) -> Pack:
    """Read a pack into memory (one open, one read per tensor).

    Not memory-mapped on purpose: a mapped file truncated or rewritten by someone else turns the next
    touch of its pages into SIGBUS, which kills the whole process (every user of the app). A copy can
    only fail here, with a ValueError naming the file; once read, the tensors stay valid whatever
    happens to the file. A pack of a 1-hour video is ~11 MB for the synthetic model (see bench_cache).
    """
    with open(path, "rb") as handle:
        header = _parse_header(handle, path)
        kv = _read_tensor(handle, path, header.tensors["kv"])
        positions = _read_tensor(handle, path, header.tensors["source_position"])
    if kv.dim() != 6 or positions.shape != (kv.shape[0],):
        raise ValueError(f"{path} is not a cache pack (kv {tuple(kv.shape)}, positions {tuple(positions.shape)})")
    return Pack(path, kv, positions, header.metadata, header.kv_data_offset, header.stamp)


def sweep_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left in `folder` (recursively) by killed writers; returns what was removed.

    Only call this on a folder the caller owns (e.g. the cache folder of a video it has claimed).
    """
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(f"*{TEMP_MARK}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ---- ragged packs (ATP: every segment keeps its own tokens per layer) -----------------------------------------
#
#     kv               [N, 2, kv_heads, head_dim]  every segment's tokens, segment by segment, layer by layer
#     lengths          [T, layers] int64           tokens each segment keeps in each layer
#     positions        [N] int64                   each token's canonical position
#     source_position  [T] int64, span [T] int64   where each segment's span starts, and its length
#     __metadata__     format=voco-ragged-pack/1, fingerprint, compressor, k, plus the writer's fields
#
# int8 ragged packs store kv as int8 [N, 2, kv_heads, head_dim + 2] (values, then each vector's float16 scale), as
# dense ones do, so a segment's run of tokens still holds its values and scales.
#
# Segment t's kv bytes are one contiguous slice (rows point at it with offset / nbytes, as for dense packs); its
# checksum covers those bytes and its lengths and positions, so a damaged index is caught as damaged KV is.
# Dense packs keep their own format, byte for byte.

RAGGED_PACK_FORMAT = "voco-ragged-pack/1"
RAGGED_TENSORS = ("kv", "lengths", "positions", "source_position", "span")


def ragged_checksum(kv: torch.Tensor, lengths: torch.Tensor, positions: torch.Tensor) -> str:
    """Checksum of one segment: its kv bytes, then its per-layer lengths and token positions (int64)."""
    return checksum(bytes(tensor_bytes(kv)) + bytes(tensor_bytes(lengths.to(torch.int64)))
                    + bytes(tensor_bytes(positions.to(torch.int64))))


@dataclass(frozen=True)
class RaggedPack:
    """A ragged pack read into memory (private copies of its tensors)."""

    path: Path
    kv: torch.Tensor  # [N, 2, kv_heads, head_dim] as stored (int8 packs: head_dim + 2, see the module doc)
    lengths: torch.Tensor  # [T, layers]
    positions: torch.Tensor  # [N]
    source_positions: torch.Tensor  # [T]
    spans: torch.Tensor  # [T]
    metadata: dict[str, str]
    kv_data_offset: int
    stamp: FileStamp

    @property
    def num_segments(self) -> int:
        return self.lengths.shape[0]

    def token_range(self, t: int) -> tuple[int, int]:
        totals = self.lengths.sum(1)
        start = int(totals[:t].sum())
        return start, start + int(totals[t])

    def slice_of(self, t: int) -> tuple[int, int]:
        """(offset, nbytes) of segment t's kv bytes in the file."""
        a, b = self.token_range(t)
        per = self.kv[0].numel() * self.kv.element_size() if len(self.kv) else 0
        return self.kv_data_offset + a * per, (b - a) * per

    def segment_checksum(self, t: int) -> str:
        a, b = self.token_range(t)
        return ragged_checksum(self.kv[a:b], self.lengths[t], self.positions[a:b])

    def segment_tensors(self, t: int) -> dict[str, torch.Tensor]:
        """Segment t's stored tensors (kv as stored): what consolidating chunks copies, byte for byte."""
        a, b = self.token_range(t)
        return {"kv": self.kv[a:b], "lengths": self.lengths[t], "positions": self.positions[a:b],
                "source_position": self.source_positions[t], "span": self.spans[t]}

    def segment(self, t: int, fingerprint: str, compressor: str, kv: torch.Tensor | None = None):
        """Segment t's `RaggedSegmentCache`, kv in the model's dtype (`kv`: the pack's, already decoded)."""
        from voco.cache import RaggedSegmentCache

        a, b = self.token_range(t)
        part = decode_kv(self.kv[a:b], self.metadata) if kv is None else kv[a:b]
        return RaggedSegmentCache(part, self.lengths[t], self.positions[a:b], int(self.source_positions[t]),
                                  int(self.spans[t]), fingerprint, compressor)

    def decoded_kv(self) -> torch.Tensor:
        """kv in the model's dtype (int8 packs dequantized; ValueError when the metadata does not fit kv)."""
        return decode_kv(self.kv, self.metadata)


def write_ragged_pack(path: Path, caches: Sequence, metadata: dict[str, str], cache_dtype: str = MODEL
                      ) -> list[Slice]:
    """Write `RaggedSegmentCache`s as one ragged pack atomically (temp, fsync, rename), their kv stored as
    `cache_dtype` (store/quant.py); each segment's slice."""
    if not caches:
        raise ValueError("a ragged pack needs at least one segment")
    parts = [{"kv": c.kv.detach().cpu(), "lengths": c.lengths, "positions": c.positions,
              "source_position": torch.tensor(c.source_position), "span": torch.tensor(c.span)} for c in caches]
    tensors = ragged_tensors(parts)
    tensors["kv"], encoding = encode_kv(tensors["kv"], cache_dtype)
    return write_ragged_tensors(path, tensors, {**metadata, **encoding})


def ragged_tensors(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A ragged pack's tensors from its segments' (`RaggedPack.segment_tensors` shaped) parts, in order."""
    return {"kv": torch.cat([p["kv"] for p in parts]).contiguous(),
            "lengths": torch.stack([p["lengths"].to(torch.int64).cpu() for p in parts]),
            "positions": torch.cat([p["positions"].to(torch.int64).cpu() for p in parts]),
            "source_position": torch.stack([p["source_position"].to(torch.int64).reshape(()) for p in parts]),
            "span": torch.stack([p["span"].to(torch.int64).reshape(()) for p in parts])}


def write_ragged_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> list[Slice]:
    """Write a ragged pack's tensors (kv as stored; the metadata says how) atomically; each segment's slice."""
    meta = {**{k: str(v) for k, v in metadata.items()}, "format": RAGGED_PACK_FORMAT}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        with open(tmp, "rb") as handle:
            header = _parse_header(handle, tmp, RAGGED_PACK_FORMAT, RAGGED_TENSORS)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    pack = RaggedPack(path, tensors["kv"], tensors["lengths"], tensors["positions"], tensors["source_position"],
                      tensors["span"], meta, header.kv_data_offset, header.stamp)
    return [Slice(*pack.slice_of(t), pack.segment_checksum(t)) for t in range(pack.num_segments)]


def read_ragged_pack(path: Path) -> RaggedPack:
    """Read a ragged pack into memory (not memory-mapped: see `read_pack`); ValueError naming the file when bad."""
    with open(path, "rb") as handle:
        header = _parse_header(handle, path, RAGGED_PACK_FORMAT, RAGGED_TENSORS)
        t = {name: _read_tensor(handle, path, header.tensors[name]) for name in RAGGED_TENSORS}
    T = t["lengths"].shape[0] if t["lengths"].dim() == 2 else -1
    if (t["kv"].dim() != 4 or T < 0 or int(t["lengths"].sum()) != t["kv"].shape[0]
            or t["positions"].shape != (t["kv"].shape[0],) or t["source_position"].shape != (T,)
            or t["span"].shape != (T,)):
        raise ValueError(f"{path} is not a ragged cache pack (kv {tuple(t['kv'].shape)}, lengths "
                         f"{tuple(t['lengths'].shape)}, positions {tuple(t['positions'].shape)})")
    return RaggedPack(path, t["kv"], t["lengths"], t["positions"], t["source_position"], t["span"], header.metadata,
                      header.kv_data_offset, header.stamp)


def pack_format(path: Path) -> str:
    """The format a pack file's header names (cheap: reads the header only)."""
    with open(path, "rb") as handle:
        _, header = _read_header(handle, path, os.fstat(handle.fileno()).st_size)
    return (header.get("__metadata__") or {}).get("format", "")


def write_dense_pack(path: Path, caches: Sequence, metadata: dict[str, str], cache_dtype: str = MODEL) -> list[Slice]:
    """Write `SegmentCache`s (every segment keeps the same k tokens in every layer) as one pack."""
    kv, encoding = encode_kv(torch.stack([c.kv.detach().cpu() for c in caches]), cache_dtype)
    return write_pack(path, kv, [c.source_position for c in caches], {**metadata, **encoding})


PACK_WRITERS = {"dense": write_dense_pack, "ragged": write_ragged_pack}
"""How each cache kind (`SegmentCache.kind`, `RaggedSegmentCache.kind`) is written; readers tell them by header."""


def write_cache_pack(path: Path, caches: Sequence, metadata: dict[str, str], cache_dtype: str = MODEL) -> list[Slice]:
    """One batch of caches of one kind as one pack, as its kind is written."""
    kinds = {c.kind for c in caches}
    if len(kinds) != 1:
        raise ValueError(f"one pack holds caches of one kind, got {sorted(kinds)}")
    return PACK_WRITERS[kinds.pop()](path, caches, metadata, cache_dtype)
