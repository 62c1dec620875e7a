"""Segment thumbnails: small JPEGs encoded with PyAV's MJPEG encoder (no PIL needed)."""

from __future__ import annotations

import threading
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

JPEG_MIME = "image/jpeg"

_local = threading.local()  # one cached swscale context per thread (VideoReformatter is not thread-safe)


def _reformatter() -> VideoReformatter:
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


def thumbnail_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(w, h) with the longest side at most `longest`, aspect kept, even (as 4:2:0 JPEG wants)."""
    scale = min(1.0, longest / max(width, height))
    w, h = max(2, round(width * scale)), max(2, round(height * scale))
    return w - w % 2, h - h % 2


def encode_jpeg(rgb: np.ndarray, quality_scale: int = 4) -> bytes:
    """uint8 [H, W, 3] RGB -> JPEG bytes (odd sizes are cropped by one pixel).

    One thread each for the colour conversion and the encoder: FFmpeg's default starts a thread pool
    per call, which costs more than encoding a thumbnail (and the pipeline runs beside the model).
    """
    h, w = rgb.shape[0] - rgb.shape[0] % 2, rgb.shape[1] - rgb.shape[1] % 2
    if h < 2 or w < 2:
        raise ValueError(f"thumbnail too small: {rgb.shape}")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = w, h, "yuvj420p", Fraction(1, 25)
    ctx.options = {"qmin": str(quality_scale), "qmax": str(quality_scale)}
    ctx.thread_count = 1
    rgb_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
    frame = _reformatter().reformat(rgb_frame, format="yuvj420p", threads=1)
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))
