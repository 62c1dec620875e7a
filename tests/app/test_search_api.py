"""The `/search` endpoint (app/search.py): ranked moments across the library, the same as the library call, each
marked weak or not."""

from pathlib import Path

import numpy as np
import pytest

from app.search import WEAK_Z, find_moments
from ingest.search import MomentSearch
from tests.app.test_api import launch

gradio_client = pytest.importorskip("gradio_client")


def test_search_endpoint_ranks_the_librarys_segments(library, tmp_path_factory):
    root, model = library
    demo, url, service = launch(root / "home", model, "tiny", tmp_path_factory)
    try:
        client = gradio_client.Client(url, verbose=False)
        hits = client.predict(query="a red circle", top=5, api_name="/search")
        expected = find_moments(MomentSearch(service.store, model), "a red circle", 5)
        assert [(h["video_id"], h["segment"], h["score"], h["weak"]) for h in hits] == [
            (h["video_id"], h["segment"], h["score"], h["weak"]) for h in expected] and len(hits) == 5
        # the tiny model's `voco-keys` scores have no absolute scale: a hit is weak unless it stands out from the
        # library's scores for the same text
        library = [h["score"] for h in MomentSearch(service.store, model).search("a red circle", 1000)]
        cut = np.mean(library) + WEAK_Z * np.std(library)
        assert [h["weak"] for h in hits] == [h["score"] < cut for h in hits]
        assert all(isinstance(h["weak"], bool) for h in hits)
        assert hits[0]["name"] == Path(expected[0]["path"]).name
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert {h["video_id"] for h in hits} <= {v.id for v in service.videos()}
        assert all(h["end_s"] > h["start_s"] for h in hits)
        for query, top, reason in (("  ", 5, "query is empty"), ("a cat", None, "top must be a whole number, got "
                                   "NoneType"), ("a cat", 1.9, "top must be a whole number, got 1.9"),
                                   ("a cat", 0, "top must be from 1 to 1000")):
            with pytest.raises(Exception, match=reason):  # the reason reaches the caller, not a generic error
                client.predict(query=query, top=top, api_name="/search")
    finally:
        demo.close()
        service.store.close()
