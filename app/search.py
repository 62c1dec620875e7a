"""The app's moment search: the `/search` API endpoint and the search box, over `ingest.vectors.MomentSearch`."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from app.validation import search_request
from ingest.vectors import MomentSearch
from store import StoreError

log = logging.getLogger(__name__)


def register_search(moments: MomentSearch) -> None:
    """Add the moment-search box and the `/search` endpoint to the gr.Blocks being built."""

    def search(query: str, top: int = 10) -> list[dict]:  # type hints for the API page: values are checked
        """Moments across the library that match the text: [{video_id, name, segment, start_s, end_s, score}]."""
        try:
            hits = moments.search(*search_request(query, top))
        except ValueError as err:  # ServiceError included: one log line, no traceback (anyone can send these)
            log.info("/search refused: %s", err)
            raise gr.Error(f"/search refused the request: {err}", print_exception=False) from err
        except StoreError as err:  # a damaged vector or index file: say which, never a generic exception
            log.warning("/search failed: %s", err)
            raise gr.Error(f"/search could not read the library's search data: {err}", print_exception=False) from err
        # no "path" key: gradio_client would take the dict for a file to download (as /videos)
        return [{"video_id": h["video_id"], "name": Path(h["path"]).name,
                 **{k: h[k] for k in ("segment", "start_s", "end_s", "score")}} for h in hits]

    def shown(query: str) -> list[list]:
        if not query.strip():
            return []
        return [[h["video_id"], h["name"], f"{h['start_s']:.1f}-{h['end_s']:.1f} s", h["score"]]
                for h in search(query, 10)]

    with gr.Accordion("Moment search", open=False):
        box = gr.Textbox(label="find moments across the library", placeholder="a cat")
        table = gr.Dataframe(headers=["video", "file", "time", "score"], interactive=False)
        box.submit(shown, box, table, api_visibility="private")
    gr.api(search, api_name="search")
