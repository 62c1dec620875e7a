"""Keeping this process's claims alive while it works (see store/claims.py)."""

from __future__ import annotations

import logging
import threading

from store import Store

log = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread that refreshes every claim of `owner` each `every_s` seconds."""

    def __init__(self, store: Store, owner: str, every_s: float):
        self.store, self.owner, self.every_s = store, owner, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.store.heartbeat(self.owner)
            except Exception as err:  # noqa: BLE001 - a missed beat is retried; the lease is long
                log.warning("heartbeat failed: %s", err)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
