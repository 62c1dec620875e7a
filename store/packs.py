"""Cache pack files: many segments' `SegmentCache`s stacked in one safetensors file, read memory-mapped.

A pack holds two tensors and string metadata (no pickle anywhere):

    kv               [T, layers, 2, kv_heads, k, head_dim]  model dtype; segment t's caches, stacked
    source_position  [T] int64                              each segment's canonical position
    __metadata__     format=voco-cache-pack/1, fingerprint, compressor, k, plus the writer's fields

Segment t's kv bytes are one contiguous slice of the file (row-major stacking), so a database row
can point at it with (file, byte offset, size, checksum), and a whole video loads as one mmap with
no copy (`read_pack`). The same format serves the per-batch chunk files written while a video is
being ingested and the consolidated per-video pack (see store/writer.py).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

PACK_FORMAT = "voco-cache-pack/1"
TEMP_MARK = ".tmp-"
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
class Pack:
    """A pack file opened memory-mapped: `kv` and `source_positions` are views of the mapping."""

    path: Path
    kv: torch.Tensor  # [T, layers, 2, kv_heads, k, head_dim]
    source_positions: torch.Tensor  # [T] int64
    metadata: dict[str, str]
    kv_data_offset: int  # file offset of kv[0]

    @property
    def segment_nbytes(self) -> int:
        return self.kv[0].numel() * self.kv.element_size() if len(self.kv) else 0

    def slice_of(self, t: int) -> tuple[int, int]:
        """(offset, nbytes) of segment t's kv bytes in the file."""
        return self.kv_data_offset + t * self.segment_nbytes, self.segment_nbytes


def checksum(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor (any dtype, bf16 included), as the file stores them."""
    return memoryview(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())


def temp_path(path: Path) -> Path:
    """A sibling temp name unique to this process and call; swept by `sweep_temp_files` when stale."""
    return path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        header_len, header = _read_header(tmp)
        begin = header["kv"]["data_offsets"][0]
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    data_start = 8 + header_len + begin
    per = kv[0].numel() * kv.element_size() if len(kv) else 0
    return [Slice(data_start + t * per, per, checksum(tensor_bytes(kv[t]))) for t in range(kv.shape[0])]


def _read_header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a cache pack (shorter than a safetensors header)")
        header_len = int.from_bytes(head, "little")
        if header_len <= 0 or header_len > 100_000_000:
            raise ValueError(f"{path} is not a cache pack (bad safetensors header length {header_len})")
        raw = handle.read(header_len)
    try:
        return header_len, json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a cache pack (unreadable header: {err})") from err


def read_pack(path: Path) -> Pack:
    """Open a pack memory-mapped (copy-on-write: never writes the file); one open, no per-segment reads."""
    header_len, header = _read_header(path)
    meta = header.get("__metadata__", {})
    if meta.get("format") != PACK_FORMAT:
        raise ValueError(f"{path} is not a VoCo cache pack (format {meta.get('format')!r}, want {PACK_FORMAT!r})")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    base = 8 + header_len

    def tensor(name: str) -> tuple[torch.Tensor, int]:
        info = header[name]
        begin, end = info["data_offsets"]
        if base + end > size:
            raise ValueError(f"{path} is truncated: tensor {name!r} ends at byte {base + end}, file has {size}")
        dtype = _DTYPES[info["dtype"]]
        numel = (end - begin) // torch.empty((), dtype=dtype).element_size()
        if numel == 0:
            return torch.empty(info["shape"], dtype=dtype), base + begin
        return torch.frombuffer(mm, dtype=dtype, count=numel, offset=base + begin).reshape(info["shape"]), base + begin

    kv, kv_offset = tensor("kv")
    positions, _ = tensor("source_position")
    return Pack(path, kv, positions, meta, kv_offset)


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
