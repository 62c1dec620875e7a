"""Display orientation: turn decoded frames the way players do, from the stream's display matrix.

Follows FFmpeg's own autorotation (fftools: `get_rotation` + the transpose/hflip/vflip it inserts),
so a phone video recorded upright comes out upright. Right angles and flips are exact; any other
angle is left as is (rare; it would need interpolation).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]


def rotation_degrees(matrix: tuple[int, ...]) -> float | None:
    """av_display_rotation_get: the counter-clockwise rotation a display matrix applies, or None."""
    m = [v / 65536.0 for v in matrix]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return None
    return -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))


def parse_display_matrix(data: bytes) -> tuple[int, ...] | None:
    if len(data) != 36:
        return None
    return struct.unpack("<9i", data)


def display_ops(matrix: tuple[int, ...] | None) -> tuple[str, ...]:
    """The operations FFmpeg applies for this display matrix: clock, cclock, clock_flip, cclock_flip, hflip, vflip."""
    if matrix is None:
        return ()
    degrees = rotation_degrees(matrix)
    if degrees is None:
        return ()
    theta = -round(degrees)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return ("cclock_flip",) if matrix[3] > 0 else ("clock",)
    if abs(theta - 180) < 1:
        return (("hflip",) if matrix[0] < 0 else ()) + (("vflip",) if matrix[4] < 0 else ())
    if abs(theta - 270) < 1:
        return ("clock_flip",) if matrix[3] < 0 else ("cclock",)
    if abs(theta) < 1:
        return ("vflip",) if matrix[4] < 0 else ()
    return ()  # arbitrary angle: not supported, frames stay as stored


_OPS: dict[str, Transform] = {
    "clock": lambda a: np.rot90(a, -1),
    "cclock": lambda a: np.rot90(a, 1),
    "clock_flip": lambda a: np.rot90(a, -1)[::-1],
    "cclock_flip": lambda a: np.rot90(a, 1)[::-1],
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
}


def apply_ops(frame: np.ndarray, ops: tuple[str, ...]) -> np.ndarray:
    """Apply display ops to an [H, W, C] frame; returns a contiguous array."""
    if not ops:
        return frame
    for op in ops:
        frame = _OPS[op](frame)
    return np.ascontiguousarray(frame)


def swaps_axes(ops: tuple[str, ...]) -> bool:
    return sum(op in ("clock", "cclock", "clock_flip", "cclock_flip") for op in ops) % 2 == 1


def ops_rotation(ops: tuple[str, ...]) -> int:
    """A single number for the record: the clockwise turn applied, in degrees (mirroring not counted)."""
    if set(ops) == {"hflip", "vflip"}:
        return 180
    turns = {"clock": 90, "cclock": 270, "clock_flip": 90, "cclock_flip": 270}
    return sum(turns.get(op, 0) for op in ops) % 360
