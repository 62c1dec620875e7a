"""The Gradio layer over `ChatService`: a video library, a streamed chat, a timeline. Kept thin."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local app

import gradio as gr  # noqa: E402

from app.service import ChatService, ServiceError  # noqa: E402

log = logging.getLogger(__name__)

EXAMPLES = [
    "What shape appears first?",
    "How many objects appear in the video?",
    "What color is the circle?",
    "Which direction does the square move?",
    "What happens at the end of the video?",
]


def _label(v) -> str:
    name = Path(v.path).name
    duration = f"{v.duration:.0f} s" if v.duration else "?"
    return f"{v.id} · {name} · {duration} · {v.num_segments or 0} segments · {v.status}"


def build_ui(service: ChatService, thumbs_dir: Path) -> gr.Blocks:
    """The app. `thumbs_dir` holds segment thumbnails written for the gallery (and nothing else)."""

    def video_choices(query: str = ""):
        return [(_label(v), v.id) for v in service.videos(query)]

    def refresh(query: str):
        return gr.update(choices=video_choices(query))

    def select(video_id):
        if video_id is None:
            return "Pick a video on the left, or upload one.", [], []
        try:
            info = service.video(int(video_id))
            frames = []
            for jpeg, caption in service.timeline(info.id):
                path = thumbs_dir / f"{hashlib.sha1(jpeg).hexdigest()[:16]}.jpg"
                if not path.exists():
                    path.write_bytes(jpeg)
                frames.append((str(path), caption))
            text = (f"**{Path(info.path).name}** · {info.duration or 0:.1f} s · {info.num_segments} segments of "
                    f"{info.segment_seconds:g} s · {info.width}x{info.height} · status {info.status}")
            return text, frames, []
        except ServiceError as err:
            return f"⚠️ {err}", [], []

    def respond(question: str, history: list, video_id, max_tokens: int, temperature: float):
        history = list(history or [])
        if video_id is None:
            gr.Warning("Pick a video first.")
            yield history, "", ""
            return
        if not (question or "").strip():
            yield history, "", ""
            return
        pairs = _pairs(history)
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
        yield history, "", "thinking…"
        try:
            for update in service.ask(int(video_id), question, pairs, max_new_tokens=int(max_tokens),
                                      temperature=float(temperature)):
                history[-1] = {"role": "assistant", "content": update.text or "…"}
                yield history, "", (update.stats.summary() if update.stats else "answering…")
        except ServiceError as err:
            history[-1] = {"role": "assistant", "content": f"⚠️ {err}"}
            yield history, "", ""
        except Exception as err:  # noqa: BLE001 - one bad request must not stop the app
            log.exception("answer failed")
            history[-1] = {"role": "assistant", "content": f"⚠️ internal error: {type(err).__name__}: {err}"}
            yield history, "", ""

    def start_upload(file):
        if file is None:
            return None, "", gr.update(active=False)
        try:
            job = service.upload(file, Path(file).name)
        except (ServiceError, OSError) as err:
            return None, f"⚠️ {err}", gr.update(active=False)
        return job.id, f"uploaded {Path(file).name}: ingesting…", gr.update(active=True)

    def poll_upload(job_id, query):
        if not job_id:
            return gr.update(), "", gr.update(active=False), job_id
        job = service.job(job_id)
        if job.status in ("queued", "ingesting"):
            return gr.update(), f"ingesting: {job.progress:.0%} ({job.message})", gr.update(active=True), job_id
        choices = video_choices(query)
        if job.status == "ready":
            return gr.update(choices=choices, value=job.video_id), f"✅ {job.message}", gr.update(active=False), None
        return gr.update(choices=choices), f"⚠️ upload failed: {job.message}", gr.update(active=False), None

    with gr.Blocks(title="VoCo Video QA") as demo:
        gr.Markdown("# VoCo Video QA\nAsk about a video: answers come from its compressed VoCo caches.")
        with gr.Row():
            with gr.Column(scale=2):
                search = gr.Textbox(label="Search videos", placeholder="name…")
                videos = gr.Dropdown(choices=video_choices(), label="Videos", value=None, elem_id="video-picker")
                refresh_btn = gr.Button("Refresh", size="sm")
                upload = gr.File(label="Upload a video", file_types=["video"], type="filepath")
                upload_status = gr.Markdown()
                info = gr.Markdown("Pick a video on the left, or upload one.")
                timeline = gr.Gallery(label="Timeline (one thumbnail per segment)", columns=6, height=220)
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat", height=420, elem_id="chat")
                question = gr.Textbox(label="Question", placeholder="What shape appears first?", elem_id="question")
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="ask")
                    stop = gr.Button("Stop")
                    clear = gr.Button("Clear")
                stats = gr.Markdown(elem_id="stats")
                gr.Examples(EXAMPLES, inputs=question)
                with gr.Accordion("Settings", open=False):
                    max_tokens = gr.Slider(1, service.limits.max_new_tokens, value=32, step=1, label="Max new tokens")
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
        job_id = gr.State(None)
        timer = gr.Timer(1.0, active=False)

        search.change(refresh, search, videos, api_visibility="private")
        refresh_btn.click(refresh, search, videos, api_visibility="private")
        videos.change(select, videos, [info, timeline, chat], api_visibility="private")
        inputs = [question, chat, videos, max_tokens, temperature]
        asked = [send.click(respond, inputs, [chat, question, stats], api_visibility="private"),
                 question.submit(respond, inputs, [chat, question, stats], api_visibility="private")]
        stop.click(None, cancels=asked, api_visibility="private")
        clear.click(lambda: ([], ""), None, [chat, stats], api_visibility="private")
        upload.upload(start_upload, upload, [job_id, upload_status, timer], api_visibility="private")
        timer.tick(poll_upload, [job_id, search], [videos, upload_status, timer, job_id], api_visibility="private")

        def ask(video_id: int, question: str, max_new_tokens: int = 32) -> str:
            """Answer a question about a stored video (greedy decoding)."""
            try:
                text, _ = service.answer(int(video_id), question, max_new_tokens=int(max_new_tokens))
            except ServiceError as err:
                raise gr.Error(str(err)) from err
            return text

        def list_videos(query: str = "") -> list[dict]:
            """Stored videos for this model: id, file name, duration, segments, status."""
            # no "path" key: gradio_client would take the dict for a file to download
            return [{"id": v.id, "name": Path(v.path).name, "duration_s": v.duration, "segments": v.num_segments,
                     "status": v.status} for v in service.videos(query)]

        gr.api(ask, api_name="ask")
        gr.api(list_videos, api_name="videos")
    return demo


def _pairs(messages: list) -> list[tuple[str, str]]:
    """Gradio chat messages -> (question, answer) turns, skipping unanswered or error turns."""
    pairs, question = [], None
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if isinstance(content, list):  # Gradio 6 may give content as a list of parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if role == "user":
            question = content
        elif role == "assistant" and question is not None and content and not str(content).startswith("⚠️"):
            pairs.append((str(question), str(content)))
            question = None
    return pairs
