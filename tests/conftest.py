import os

import numpy as np
import pytest
import torch

from tests.fixtures.postgres import PostgresServer, PostgresUnavailable

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def make_segments():
    """Random uint8 segments [F, H, W, 3], seeded per call."""

    def make(count: int, frames: int = 2, size: tuple[int, int] = (40, 48), seed: int = 0) -> list[torch.Tensor]:
        rng = np.random.default_rng(seed)
        return [torch.from_numpy(rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8)) for _ in range(count)]

    return make


@pytest.fixture(autouse=True, scope="session")
def digest_cache_in_tmp(tmp_path_factory):
    """Weights digests of the models tests load go to a temp folder, not the user's ~/.cache (voco/identity.py)."""
    import os

    from voco.identity import DIGEST_CACHE_ENV

    before = os.environ.get(DIGEST_CACHE_ENV)
    os.environ[DIGEST_CACHE_ENV] = str(tmp_path_factory.mktemp("digests"))
    yield
    if before is None:
        os.environ.pop(DIGEST_CACHE_ENV, None)
    else:
        os.environ[DIGEST_CACHE_ENV] = before


@pytest.fixture(scope="session")
def postgres_server():
    """One throw-away PostgreSQL server for the whole test session (see tests/fixtures/postgres.py).

    Skips (with the reason) where none can start; with VOCO_REQUIRE_POSTGRES=1 (CI) that is a failure.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        reason = "psycopg is not installed (pip install -e '.[postgres]')"
        server = None
    else:
        try:
            server, reason = PostgresServer.start(), ""
        except PostgresUnavailable as err:
            server, reason = None, f"no PostgreSQL server: {err}"
    if server is None:
        if os.environ.get("VOCO_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database (SQLAlchemy URL)."""
    return postgres_server.new_database()


@pytest.fixture(params=BACKENDS)
def db_url(request) -> str | None:
    """Each back end in turn: None (the store's SQLite file in its home) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")
