"""The app's moment search: the `/search` API endpoint and the search box, over `ingest.search.MomentSearch`.

Search always returns its best hits, even when nothing in the library shows what was asked ("a phone" in a
library with no phone), so every hit says whether it is `weak`: a score too low to trust (see `weak_cut`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import gradio as gr
import numpy as np

from app.validation import public_text, search_request
from ingest.search import MomentSearch
from store import StoreError
from voco.search import ClassEvidenceEmbedder, ConceptEvidenceEmbedder
from voco.timeline import clock

log = logging.getLogger(__name__)

COSINE_SCORED = (ConceptEvidenceEmbedder, ClassEvidenceEmbedder)
"""Embedders whose library score is a cosine: unit sentence vectors (all-MiniLM-L6-v2) on both sides, and
library-wide search ranks that raw score (the novelty weight only reorders segments within one video)."""
WEAK_COSINE = 0.5
"""A cosine hit below this is weak. Measured with all-MiniLM-L6-v2 on a query against the phrases the evidence
tower writes: the phrase that names what was asked scores 0.54-0.85 ("a cat" / "tabby cat animal" 0.68, "a
bicycle" / "mountain bike vehicle" 0.56, "a laptop" / "laptop computer" 0.85); the best phrase of a library
without it 0.30-0.49 (a related thing: "a car" / "motor scooter vehicle" 0.49, "a phone" / "television" 0.41,
"a cat" / "brown dog animal" 0.42); unrelated phrases score 0.1-0.25."""
WEAK_Z = 2.0
"""Embedders without an absolute scale (`voco-keys`: an unnormalised attention logit whose size changes with the
query and the model) cannot say "nothing matches"; a hit there is weak unless it stands out from the library's
scores for the same text: at least WEAK_Z standard deviations above their mean (about the top 2% of segments
when the scores are normal, so most hits of a text that matches nothing in particular are weak)."""
POOL = 1000
"""How many of the library's scores `weak_cut` reads for a relative cut (the most `MomentSearch.search` returns;
in a larger library its top scores: a stricter cut)."""
COLUMNS = ["video", "file", "segment", "time", "score", "match"]
WEAK_LABEL = "weak"
"""The "match" column of a weak hit ("good" otherwise)."""


class SearchBox(NamedTuple):
    """The moment-search components the rest of the page wires to (a click on a hit, app/ui.py)."""

    table: gr.Dataframe
    hits: gr.State
    """The hits shown in `table`, one dict per row (as `/search` returns them)."""


def weak_cut(cosine: bool, scores: list[float]) -> float:
    """The score below which a hit is weak: `WEAK_COSINE` for a cosine; else `WEAK_Z` standard deviations above
    the mean of `scores` (the library's scores for the text, best first)."""
    if cosine:
        return WEAK_COSINE
    values = np.asarray(scores, np.float64)
    return float(values.mean() + WEAK_Z * values.std()) if values.size else 0.0


def find_moments(moments: MomentSearch, query: str, top: int) -> list[dict]:
    """The `top` best moments for `query`, each with `weak` (see `weak_cut`)."""
    cosine = isinstance(moments.embedder, COSINE_SCORED)
    hits = moments.search(query, top if cosine else max(top, POOL))  # a relative cut needs the library's scores
    cut = weak_cut(cosine, [h["score"] for h in hits])
    # equal scores in a fixed order (faiss orders ties by how many hits it was asked for)
    hits = sorted(hits, key=lambda h: (-h["score"], h["video_id"], h["segment"]))
    return [{**h, "weak": bool(h["score"] < cut)} for h in hits[:top]]


def table_rows(hits: list[dict]) -> list[list]:
    """Rows of the search table: video id, file, segment, its time span, score, and whether the match is weak."""
    return [[h["video_id"], h["name"], h["segment"], f"{clock(h['start_s'])}-{clock(h['end_s'])}", h["score"],
             WEAK_LABEL if h["weak"] else "good"] for h in hits]


def register_search(moments: MomentSearch) -> SearchBox:
    """Add the moment-search box and the `/search` endpoint to the gr.Blocks being built."""

    def search(query: str, top: int = 10) -> list[dict]:  # type hints for the API page: values are checked
        """Moments across the library that match the text: [{video_id, name, segment, start_s, end_s, score, weak}];
        `weak` is true for a hit whose score is too low to trust (search always returns its best, even when
        nothing in the library matches)."""
        try:
            hits = find_moments(moments, *search_request(query, top))
        except ValueError as err:  # ServiceError included: one log line, no traceback (anyone can send these)
            log.info("/search refused: %s", err)
            raise gr.Error(f"/search refused the request: {err}", print_exception=False) from err
        except StoreError as err:  # a damaged vector or index file: say which, never a generic exception
            log.warning("/search failed: %s", err)
            reason = public_text(str(err), moments.store.home.root)  # no server paths to API callers
            raise gr.Error(f"/search could not read the library's search data: {reason}",
                           print_exception=False) from err
        # no "path" key: gradio_client would take the dict for a file to download (as /videos)
        return [{"video_id": h["video_id"], "name": Path(h["path"]).name,
                 **{k: h[k] for k in ("segment", "start_s", "end_s", "score", "weak")}} for h in hits]

    def shown(query: str):
        """-> the table, the hits behind its rows, and a note when no hit is a good match."""
        hits = search(query, 10) if query.strip() else []
        note = ""
        if hits and all(h["weak"] for h in hits):
            note = "No good match in the library: these are only the closest moments (all weak)."
        elif hits:
            note = "Click a moment to open it on the timeline (the question box gets a question about it)."
        return table_rows(hits), hits, note

    with gr.Accordion("Moment search", open=False, elem_id="moment-search"):
        box = gr.Textbox(label="find moments across the library", placeholder="a cat", elem_id="search-box")
        note = gr.Markdown(elem_id="search-note")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="search-hits")
        hits = gr.State([])
        box.submit(shown, box, [table, hits, note], api_visibility="private")
    gr.api(search, api_name="search")
    return SearchBox(table, hits)
