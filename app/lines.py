"""What the app says, as text: video labels, the info and library lines, answer sources and times, chat turns.

Plain functions of the service's records (no Gradio), so `app/ui.py` stays the layout and its handlers.
"""

from __future__ import annotations

from app.service import NO_ANSWER, ChatService, TimeLink
from app.uploads import ordinal
from store import VideoStatus
from voco.session import SegmentSpan
from voco.timeline import clock

NO_ANSWER_BUBBLE = f"_({NO_ANSWER})_"
"""What the chat shows for an empty answer."""
TIME_OPTION = "go to "
"""Starts the label of each time button under the last answer (its value is the time as written, "0:04"); words, not
an icon: a stopwatch glyph showed as an empty box where the browser's fonts lack it (headless chromium)."""
WHOLE_LIBRARY = 0
"""The picker's value for questions about the whole library (video ids start at 1)."""
WHOLE_LIBRARY_LABEL = "📚 the whole library"


def sources_line(sources) -> str:
    """Which videos and times a whole-library answer used: "seen in cat.mp4 at 0:04, 0:06 · bikes.mp4 at 1:02"."""
    by_video: dict[str, list[str]] = {}
    for source in sources:
        by_video.setdefault(source.name, []).append(clock(source.span.start_s or 0.0))
    return "seen in " + " · ".join(f"{name} at {', '.join(times)}" for name, times in by_video.items())


def library_line(service: ChatService) -> str:
    """How many videos can be asked about, and how many cannot (failed or still being ingested)."""
    counts = service.counts()
    ready, live = counts.get(VideoStatus.READY, 0), counts.get(VideoStatus.LIVE, 0)
    text = f"{ready} video{'s' if ready != 1 else ''} ready" + (f" · {live} live" if live else "")
    others = [f"{n} {status}" for status, n in sorted(counts.items())
              if status not in (VideoStatus.READY, VideoStatus.LIVE) and n]
    if others:
        text += f" · not listed: {', '.join(others)} (`python -m ingest --list` says why)"
    return text


def video_label(service: ChatService, v) -> str:
    duration = f"{v.duration:.0f} s" if v.duration else "?"
    if v.status == VideoStatus.LIVE:
        return f"{v.id} · 🔴 live · {service.name(v.path)} · {duration} · {v.num_segments or 0} segments so far"
    return f"{v.id} · {service.name(v.path)} · {duration} · {v.num_segments or 0} segments"


def info_line(service: ChatService, info) -> str:
    """The picked video's line above its timeline."""
    live = "🔴 live: " if info.status == VideoStatus.LIVE else ""
    return (f"{live}**{service.name(info.path)}** · {info.duration or 0:.1f} s · {info.num_segments} segments "
            f"of {info.segment_seconds:g} s{' so far' if live else ''} · {info.width}x{info.height}")


def waiting_line(place: int) -> str:
    """A question's place in the answering line: "waiting: 2nd in line (other questions are being answered)"."""
    return f"waiting: {ordinal(place)} in line (other questions are being answered)"


def time_options(times: tuple[TimeLink, ...]) -> dict:
    """Chat message options (buttons under the last answer), one per distinct time in it, in order."""
    written = dict.fromkeys(t.text for t in times)
    return {"options": [{"label": f"{TIME_OPTION}{text}", "value": text} for text in written]} if written else {}


def moment_line(link: TimeLink) -> str:
    """What a clicked time selects: "**0:04** · segment #4 · 0:04-0:05"."""
    return f"**{link.text}** · {segment_line(link.segment)}"


def segment_line(span: SegmentSpan) -> str:
    """A segment in full, under the timeline: "segment #4 · 0:04-0:05"."""
    return f"segment #{span.index} · {clock(span.start_s)}-{clock(span.end_s)}"
