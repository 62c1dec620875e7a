"""The app's moment search: the `/search` API endpoint and the search box, over `ingest.vectors.MomentSearch`."""

from __future__ import annotations

import gradio as gr

from ingest.vectors import MomentSearch
from store import Store
from voco import VoCoModel


def register_search(store: Store, model: VoCoModel) -> None:
    """Add the moment-search box and the `/search` endpoint to the gr.Blocks being built."""
    moments = MomentSearch(store, model)

    def search(query: str, top: int = 10) -> list[dict]:
        """Moments across the library that match the text: [{video_id, path, segment, start_s, end_s, score}]."""
        try:
            return moments.search(query, int(top))
        except ValueError as err:
            raise gr.Error(f"/search refused the request: {err}") from err

    def shown(query: str) -> list[list]:
        if not query.strip():
            return []
        return [[h["video_id"], h["path"].rsplit("/", 1)[-1], f"{h['start_s']:.1f}-{h['end_s']:.1f} s", h["score"]]
                for h in search(query, 10)]

    with gr.Accordion("Moment search", open=False):
        box = gr.Textbox(label="find moments across the library", placeholder="a red circle")
        table = gr.Dataframe(headers=["video", "file", "time", "score"], interactive=False)
        box.submit(shown, box, table, api_visibility="private")
    gr.api(search, api_name="search")
