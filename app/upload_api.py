"""The upload endpoints (`/upload`, `/upload_status`, `/cancel_upload`): what the upload box does, for programs.

    job = client.predict(video=handle_file("cat.mp4"), api_name="/upload")      # {"job_id", "status", ...}
    client.predict(job_id=job["job_id"], api_name="/upload_status")              # until status is "ready"

An upload is ingested in the background by the replica that took it; every replica on the same store lists the
video once it is ready (`/videos`). A job id belongs to the replica that issued it.

No `from __future__ import annotations` here: `gr.api` reads these functions' type hints as types.
"""

from pathlib import Path

import gradio as gr
from gradio import FileData

from app.service import ChatService
from app.uploads import UploadJob
from app.validation import ServiceError


def job_dict(job: UploadJob) -> dict:
    return {"job_id": job.id, "name": job.name, "status": str(job.status), "progress": round(job.progress, 3),
            "message": job.message, "video_id": job.video_id}


def register_upload_api(service: ChatService, refused, failed) -> None:
    """Adds the endpoints; `refused` / `failed` turn a refusal / a bug into the gr.Error the caller sees."""

    def upload(video: FileData) -> dict:
        """Upload a video file and ingest it in the background. Returns {"job_id", "name", "status" (queued,
        ingesting, ready, failed, cancelled), "progress" (0-1), "message", "video_id" (once ready)}; a file that
        is no video, too large or too long is refused with its reason."""
        field = video.get if isinstance(video, dict) else lambda key: getattr(video, key, None)
        path = field("path")
        if not path:
            raise refused("/upload", ServiceError("video must be a file (gradio_client.handle_file(path))"))
        name = field("orig_name") or Path(path).name
        try:
            return job_dict(service.upload(path, name))
        except (ServiceError, OSError) as err:
            raise refused("/upload", ServiceError(service.public(str(err)))) from err
        except Exception as err:  # noqa: BLE001 - a bug in one request must not stop the app
            raise failed("/upload", err) from err
        finally:
            Path(path).unlink(missing_ok=True)  # gradio's own copy: ours is in the upload folder now

    def upload_status(job_id: str) -> dict:
        """An upload's state (as /upload returns it)."""
        try:
            return job_dict(service.job(str(job_id)))
        except ServiceError as err:
            raise refused("/upload_status", err) from err

    def cancel_upload(job_id: str) -> dict:
        """Stop an upload (it stops within one ingest batch and keeps nothing); returns its state."""
        try:
            return job_dict(service.cancel_upload(str(job_id)))
        except ServiceError as err:
            raise refused("/cancel_upload", err) from err

    gr.api(upload, api_name="upload")
    gr.api(upload_status, api_name="upload_status")
    gr.api(cancel_upload, api_name="cancel_upload")
