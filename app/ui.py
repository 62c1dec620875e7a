"""The Gradio layer over `ChatService`: a video library, a streamed chat, a timeline. Kept thin."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local app

import gradio as gr  # noqa: E402

from app.lines import (  # noqa: E402
    NO_ANSWER_BUBBLE,
    WHOLE_LIBRARY,
    WHOLE_LIBRARY_LABEL,
    info_line,
    library_line,
    moment_line,
    segment_line,
    sources_line,
    time_options,
    video_label,
    waiting_line,
)
from app.search import register_search  # noqa: E402
from app.service import ChatService, ServiceError, TimeLink  # noqa: E402
from app.upload_api import register_upload_api  # noqa: E402
from app.uploads import UploadStatus  # noqa: E402
from store import VideoStatus  # noqa: E402
from voco.session import SegmentSpan  # noqa: E402
from voco.timeline import clock  # noqa: E402

log = logging.getLogger(__name__)

# kinds the bundled default model was trained on (what it can see: docs/measured.md, "The bundled default model")
EXAMPLES = [
    "What is in the video?",
    "Is there a person?",
    "When does the car appear?",
    "What colour is the car?",
    "What appears first?",
]
TIMELINE_CSS = "#timeline .caption-label { white-space: normal; overflow-wrap: anywhere; }"
"""Gradio clips a thumbnail's caption to one line of 80% of its cell with an ellipsis, so "▶ used · 1:02:05"
lost its time in a small cell: wrapped instead, a caption of any length is read whole."""


LIVE_REFRESH_S = 2.0
"""How often the app shows a live video's new segments (info line and timeline)."""


def _refused(endpoint: str, err: Exception) -> gr.Error:
    """A request the service refused: one log line, the reason to the caller, no traceback."""
    log.info("%s refused: %s", endpoint, err)
    return gr.Error(str(err), print_exception=False)


def _failed(endpoint: str, err: Exception) -> gr.Error:
    """A bug: the traceback goes to the log once, the caller gets its type and message."""
    log.exception("%s failed", endpoint)
    return gr.Error(f"internal error: {type(err).__name__}: {err}", print_exception=False)


BUSY_MARGIN = 8
"""Answer requests let through beyond the service's batch and line: they reach it and hear "busy" at once, rather
than waiting unseen in gradio's own queue."""


def answer_slots(service: ChatService) -> int:
    """How many answer requests (chat and /ask together) gradio runs at once: the service's batch and line decide
    who is answered, who waits (and sees their place) and who is told the app is busy."""
    return service.limits.max_batch + service.limits.max_queue + BUSY_MARGIN


class ChatPage:
    """The app's page: its handlers (methods) over one `ChatService`, the layout, and the wiring between them."""

    def __init__(self, service: ChatService, thumbs_dir: Path):
        self.service = service
        self.thumbs_dir = thumbs_dir  # segment thumbnails written for the gallery (and nothing else)

    def video_choices(self, query: str = ""):
        videos = [(video_label(self.service, v), v.id) for v in self.service.videos(query)]
        return [(WHOLE_LIBRARY_LABEL, WHOLE_LIBRARY), *videos] if videos else videos

    def refresh(self, query: str):
        return gr.update(choices=self.video_choices(query)), library_line(self.service)

    def gallery(self, video_id, used=()) -> list[tuple[str, str]]:
        """(thumbnail file, caption) per segment, the segments in `used` marked."""
        frames = []
        for jpeg, caption in self.service.timeline(video_id, used):
            path = self.thumbs_dir / f"{hashlib.sha1(jpeg).hexdigest()[:16]}.jpg"
            if not path.exists():
                path.write_bytes(jpeg)
            frames.append((str(path), caption))
        return frames

    def select(self, video_id, focus=None):
        """-> info line, timeline, chat, moment line, focus (used up). `focus` (video id, segment index): the
        moment-search hit that picked this video, selected on its timeline."""
        if video_id is None:
            return "Pick a video on the left, or upload one.", [], [], "", None
        if video_id == WHOLE_LIBRARY:
            return ("**The whole library**: each question is answered from the segments of all videos that match "
                    "it best; the answer says which videos and times it used.", [], [], "", None)
        try:
            info = self.service.video(video_id)
            frames = self.gallery(info.id)
            text = info_line(self.service, info)
            if focus is None or focus[0] != info.id:
                return text, frames, [], "", None
            position, line = self.focused(info.id, focus[1])
            return text, gr.update(value=frames, selected_index=position), [], line, None
        except ServiceError as err:
            return f"⚠️ {err}", [], [], "", None

    def watch_live(self, video_id):
        """Refresh a live video's info line and timeline while it grows (the timer stops once it is ready)."""
        try:
            live = video_id not in (None, WHOLE_LIBRARY) and self.service.video(video_id).status == VideoStatus.LIVE
        except ServiceError:
            live = False
        return gr.update(active=live)

    def grow(self, video_id):
        try:
            info = self.service.video(video_id)
        except ServiceError as err:
            return f"⚠️ {err}", gr.update(), gr.update(active=False)
        return info_line(self.service, info), self.gallery(info.id), gr.update(active=info.status == VideoStatus.LIVE)

    def focused(self, video_id, segment_index: int) -> tuple[int | None, str]:
        """-> where a segment is on the timeline (None: it has no thumbnail there) and its moment line."""
        shown = self.service.timeline_segments(video_id)
        position = next((i for i, s in enumerate(shown) if s.index == segment_index), None)
        if position is None:
            return None, f"segment #{segment_index} has no thumbnail on the timeline"
        span = shown[position]
        link = TimeLink(clock(span.start_s), span.start_s, SegmentSpan(span.index, span.start_s, span.end_s))
        return position, moment_line(link)

    def show_segment(self, video_id, evt: gr.SelectData):
        """A thumbnail was clicked: its segment's number and whole span under the timeline (its caption is short)."""
        try:
            segments = [] if video_id is None else self.service.timeline_segments(video_id)
        except ServiceError as err:
            return f"⚠️ {err}"
        if not isinstance(evt.index, int) or not 0 <= evt.index < len(segments):
            return gr.update()
        span = segments[evt.index]
        return segment_line(SegmentSpan(span.index, span.start_s, span.end_s))

    def open_hit(self, hits: list[dict], video_id, query: str, evt: gr.SelectData):
        """A moment-search hit was clicked: pick its video, select its segment, and fill the question box with a
        question about that moment. -> picker, focus, timeline, moment line, question."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(row, int) or not 0 <= row < len(hits or []):
            return gr.update(), None, gr.update(), gr.update(), gr.update()
        hit = hits[row]
        question = f"What happens at {clock(hit['start_s'])}?"
        if hit["video_id"] == video_id:  # the picker keeps its value, so `select` does not run: select here
            try:
                position, line = self.focused(video_id, hit["segment"])
            except ServiceError as err:  # removed since the search
                return gr.update(), None, gr.update(), f"⚠️ {err}", question
            return gr.update(), None, gr.update(selected_index=position), line, question
        # `select` runs when the picker changes and selects the segment in the new video's timeline
        picker = gr.update(choices=self.choices_with(query, hit["video_id"]), value=hit["video_id"])
        return picker, (hit["video_id"], hit["segment"]), gr.update(), gr.update(), question

    def choices_with(self, query: str, video_id: int):
        """The picker's choices for the name filter, or all of them when the filter hides `video_id`."""
        choices = self.video_choices(query)
        return choices if any(value == video_id for _, value in choices) else self.video_choices()

    def show_time(self, video_id, evt: gr.SelectData):
        """A time button under the last answer was clicked: select its segment on the timeline, say which."""
        try:
            links = [] if video_id in (None, WHOLE_LIBRARY) else self.service.times(video_id, str(evt.value))
            if not links:
                return gr.update(), ""
            position = self.service.timeline_position(video_id, links[0].segment.index)
        except ServiceError as err:
            return gr.update(), f"⚠️ {err}"
        return gr.update(selected_index=position), moment_line(links[0])

    def respond(self, question: str, history: list, turns: list, video_id, max_tokens: int, temperature: float):
        """-> chat, question box, stats line, timeline, turns. `turns`: the (question, answer) pairs answered so
        far in this chat (a `gr.State`, not read back from the bubbles), the history each answer is given."""
        history, turns = list(history or []), [tuple(t) for t in turns or []]
        if video_id is None:  # the typed question and the last answer's stats stay where they are
            gr.Warning("Pick a video first: your question is kept.")
            yield history, question, gr.update(), gr.update(), turns
            return
        if not (question or "").strip():
            gr.Warning("Type a question first (the question is empty).")
            yield history, question, gr.update(), gr.update(), turns
            return
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
        yield history, "", "thinking…", gr.update(), turns
        library = video_id == WHOLE_LIBRARY
        try:
            for update in self.service.ask(None if library else video_id, question, turns,
                                           max_new_tokens=max_tokens, temperature=temperature):
                if update.queued is not None:  # other people's questions are being answered: say where this one is
                    line = waiting_line(update.queued)
                    history[-1] = {"role": "assistant", "content": f"… {line}"}
                    yield history, "", line, gr.update(), turns
                    continue
                shown = update.text or ("…" if update.stats is None else NO_ANSWER_BUBBLE)
                history[-1] = {"role": "assistant", "content": shown}
                if update.stats is None:
                    yield history, "", "answering…", gr.update(), turns
                    continue
                answered = [*turns, (question, update.text)]  # an empty answer goes on as the empty answer it was
                if library:  # no one timeline: the stats say which videos and times the answer used
                    line = f"{sources_line(update.sources)} · {update.stats.summary()}"
                    yield history, "", line, gr.update(), answered
                else:  # the timeline marks the segments this answer used; its times become buttons
                    history[-1] = {**history[-1], **time_options(update.times)}
                    used = {s.index for s in update.stats.segments_used}
                    yield history, "", update.stats.summary(), self.gallery(video_id, used), answered
        except ServiceError as err:  # a refused turn is shown, not given to later answers
            log.info("chat refused: %s", err)
            history[-1] = {"role": "assistant", "content": f"⚠️ {err}"}
            yield history, "", "", gr.update(), turns
        except Exception as err:  # noqa: BLE001 - one bad request must not stop the app
            log.exception("answer failed")
            history[-1] = {"role": "assistant", "content": f"⚠️ internal error: {type(err).__name__}: {err}"}
            yield history, "", "", gr.update(), turns

    def start_upload(self, file):
        """-> job id, status line, timer, cancel button, the file box (emptied: gradio's copy is deleted)."""
        if file is None:
            return None, "", gr.update(active=False), gr.update(visible=False), None
        name = Path(file).name  # gradio keeps the original name: <its cache>/<hash>/<name>
        try:
            job = self.service.upload(file, name)
        except (ServiceError, OSError) as err:
            return None, f"⚠️ {err}", gr.update(active=False), gr.update(visible=False), None
        finally:
            Path(file).unlink(missing_ok=True)  # gradio's own copy: ours is in the upload folder now
        state = job.message if job.status == UploadStatus.QUEUED else "ingesting…"  # "queued: 2nd in line (…)"
        return job.id, f"uploaded {name}: {state}", gr.update(active=True), gr.update(visible=True), None

    def cancel_upload(self, job_id):
        if job_id:
            self.service.cancel_upload(job_id)
        return "cancelling…" if job_id else ""

    def poll_upload(self, job_id, query):
        if not job_id:
            return gr.update(), gr.update(), "", gr.update(active=False), job_id, gr.update(visible=False)
        job = self.service.job(job_id)
        if job.status.running:
            line = (f"{job.name}: {job.message}" if job.status == UploadStatus.QUEUED
                    else f"ingesting {job.name}: {job.progress:.0%} ({job.message})")
            return (gr.update(), gr.update(), line,
                    gr.update(active=True), job_id, gr.update(visible=True))
        picked = job.video_id if job.status == UploadStatus.READY else None
        choices = gr.update(choices=self.video_choices(query), **({"value": picked} if picked is not None else {}))
        prefix = {UploadStatus.READY: "✅", UploadStatus.CANCELLED: "⏹️"}.get(job.status, "⚠️ upload failed:")
        return (choices, library_line(self.service), f"{prefix} {job.name}: {job.message}", gr.update(active=False),
                None, gr.update(visible=False))

    def layout(self) -> SimpleNamespace:
        """The page's components (inside a `gr.Blocks`), by name."""
        gr.Markdown("# VoCo Video QA\nAsk about a video: answers come from its compressed VoCo caches.")
        with gr.Row():
            with gr.Column(scale=2):
                search = gr.Textbox(label="Search videos", placeholder="name…")
                videos = gr.Dropdown(choices=self.video_choices(), label="Videos", value=None, elem_id="video-picker")
                library = gr.Markdown(library_line(self.service), elem_id="library")
                refresh_btn = gr.Button("Refresh", size="sm")
                upload = gr.File(label="Upload a video", file_types=["video"], type="filepath",
                                 visible=self.service.uploads is not None, elem_id="upload")
                upload_status = gr.Markdown(elem_id="upload-status")
                cancel = gr.Button("Cancel upload", size="sm", visible=False, elem_id="cancel-upload")
                info = gr.Markdown("Pick a video on the left, or upload one.")
                # whole thumbnails (16:9 or 4:3 or portrait), letterboxed in their cells, never cropped
                timeline = gr.Gallery(label="Timeline (one thumbnail per segment)", columns=4,
                                      object_fit="contain", elem_id="timeline")
                # css belongs to launch() in Gradio 6, which callers own (python -m app, tests): the page's own
                # style travels with the page instead
                gr.HTML(f"<style>{TIMELINE_CSS}</style>", padding=False)
                moment = gr.Markdown(elem_id="moment")  # the segment clicked last (a thumbnail, an answer's time)
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat", height=420, elem_id="chat")
                question = gr.Textbox(label="Question", placeholder="What is in the video?", elem_id="question")
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="ask")
                    stop = gr.Button("Stop")
                    clear = gr.Button("Clear")
                stats = gr.Markdown(elem_id="stats")
                gr.Examples(EXAMPLES, inputs=question)
                with gr.Accordion("Settings", open=False):
                    max_tokens = gr.Slider(1, self.service.limits.max_new_tokens, value=32, step=1,
                                           label="Max new tokens")
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
        job_id = gr.State(None)
        turns = gr.State([])  # (question, answer) pairs of this chat: the history each answer is given
        focus = gr.State(None)  # (video id, segment index) of the moment-search hit that changed the picker
        timer = gr.Timer(1.0, active=False)
        live_timer = gr.Timer(LIVE_REFRESH_S, active=False)
        return SimpleNamespace(search=search, videos=videos, library=library, refresh_btn=refresh_btn, upload=upload,
                               upload_status=upload_status, cancel=cancel, info=info, timeline=timeline,
                               moment=moment, chat=chat, question=question, send=send, stop=stop, clear=clear,
                               stats=stats, max_tokens=max_tokens, temperature=temperature, job_id=job_id, turns=turns,
                               focus=focus, timer=timer, live_timer=live_timer)

    def wire(self, demo: gr.Blocks, ui: SimpleNamespace) -> dict:
        """Events -> handlers; returns the answering concurrency settings (the /ask API shares them)."""
        private = {"api_visibility": "private"}  # page events, not API endpoints
        listed = [ui.videos, ui.library]
        demo.load(self.refresh, ui.search, listed, **private)  # a page opened after a CLI ingest
        ui.search.change(self.refresh, ui.search, listed, **private)
        ui.refresh_btn.click(self.refresh, ui.search, listed, **private)
        ui.videos.change(self.select, [ui.videos, ui.focus], [ui.info, ui.timeline, ui.chat, ui.moment, ui.focus],
                         **private)
        ui.videos.change(self.watch_live, ui.videos, ui.live_timer, **private)
        ui.videos.change(lambda: [], None, ui.turns, **private)  # another video: a new chat
        ui.live_timer.tick(self.grow, ui.videos, [ui.info, ui.timeline, ui.live_timer], **private)
        ui.chat.option_select(self.show_time, ui.videos, [ui.timeline, ui.moment], **private)
        ui.timeline.select(self.show_segment, ui.videos, ui.moment, **private)
        inputs = [ui.question, ui.chat, ui.turns, ui.videos, ui.max_tokens, ui.temperature]
        answered = [ui.chat, ui.question, ui.stats, ui.timeline, ui.turns]
        answering = {"concurrency_limit": answer_slots(self.service), "concurrency_id": "answers"}
        asked = [ui.send.click(self.respond, inputs, answered, **private, **answering),
                 ui.question.submit(self.respond, inputs, answered, **private, **answering)]
        ui.stop.click(None, cancels=asked, **private)
        ui.clear.click(lambda: ([], "", "", []), None, [ui.chat, ui.stats, ui.moment, ui.turns], **private)
        ui.upload.upload(self.start_upload, ui.upload, [ui.job_id, ui.upload_status, ui.timer, ui.cancel, ui.upload],
                         **private)
        ui.cancel.click(self.cancel_upload, ui.job_id, ui.upload_status, **private)
        ui.timer.tick(self.poll_upload, [ui.job_id, ui.search],
                      [ui.videos, ui.library, ui.upload_status, ui.timer, ui.job_id, ui.cancel], **private)
        return answering


def register_api(service: ChatService, answering: dict) -> None:
    """The /ask and /videos endpoints (gradio_client and HTTP callers)."""

    def ask(video_id: int | None, question: str, max_new_tokens: int = 32) -> dict:
        """Answer a question about a stored video (greedy decoding); video_id null: about the whole library,
        from the segments of all videos that match the question best, with "sources": [{"video_id", "name",
        "index", "start_s", "end_s"}] for each segment used.

        Returns {"answer": text, "note": ..., "segments_used": [{"index", "start_s", "end_s"}, ...],
        "subset": true when only some of the video's segments were used, "segments_total", "tokens", ...,
        "times": [{"text": "0:04", "seconds": 4.0, "segment": {"index", "start_s", "end_s"}}, ...] for each
        clock time in the answer, with the segment it falls in}: an empty answer comes with the note
        "the model gave no answer"; a bad request raises its reason."""
        try:
            return service.answer_dict(video_id, question, max_new_tokens=max_new_tokens)
        except ServiceError as err:
            raise _refused("/ask", err) from err
        except Exception as err:  # noqa: BLE001 - a bug in one request must not stop the app
            raise _failed("/ask", err) from err

    def list_videos(query: str = "") -> list[dict]:
        """Videos ready to be asked about: id, file name, duration, segments, status."""
        if not isinstance(query, str):
            raise _refused("/videos", ServiceError(f"query must be text, got {type(query).__name__}"))
        # no "path" key: gradio_client would take the dict for a file to download
        return [{"id": v.id, "name": service.name(v.path), "duration_s": v.duration, "segments": v.num_segments,
                 "status": v.status} for v in service.videos(query)]

    gr.api(ask, api_name="ask", **answering)
    gr.api(list_videos, api_name="videos")


def build_ui(service: ChatService, thumbs_dir: Path) -> gr.Blocks:
    """The app. `thumbs_dir` holds segment thumbnails written for the gallery (and nothing else)."""
    page = ChatPage(service, thumbs_dir)
    with gr.Blocks(title="VoCo Video QA", delete_cache=(3600, 3600)) as demo:
        ui = page.layout()
        answering = page.wire(demo, ui)
        register_api(service, answering)
        register_upload_api(service, _refused, _failed)  # /upload, /upload_status, /cancel_upload
        found = register_search(service.moments)  # the /search endpoint and box (app/search.py)
        found.table.select(page.open_hit, [found.hits, ui.videos, ui.search],
                           [ui.videos, ui.focus, ui.timeline, ui.moment, ui.question],
                           api_visibility="private")
    return demo
