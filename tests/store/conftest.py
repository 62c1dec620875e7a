import pytest

from store import Store


@pytest.fixture
def store(tmp_path, db_url):
    """A fresh store on each back end: SQLite in its home, and a fresh database on a PostgreSQL server."""
    s = Store.open(tmp_path / "home", db_url, lease_s=30)
    yield s
    s.close()
