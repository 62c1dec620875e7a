"""Video files -> segment frames: the one decode routine that ingest, evaluation and training share.

    probe     one demux pass: presentation timestamps, duration, display orientation; `VideoError` for bad files
    plan      `voco.segments`' timestamp rule applied to a probed video (which pts each segment needs)
    decode    decoding only the planned frames (PyAV, or decord when installed), one resize, rotation
    frames    `decode_video_segments(path, ...)`: a whole video's segments in memory
    rotation  display-matrix orientation, as players apply it

It lives in `voco` (which knows nothing of ingest) so that training data readers (`voco.train.readers`) sample
a video's frames exactly as `python -m ingest` does; ingest imports it from here.
"""

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts", ".wmv", ".flv",
    ".3gp", ".ogv", ".qt",
)
"""File name endings taken as videos, everywhere (ingest, the app's uploads, dataset readers), in the order a
dataset reader prefers them when one id has several files."""
