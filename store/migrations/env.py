"""Alembic environment of the store.

Run programmatically by `store.db.upgrade` (which passes an open connection in
`config.attributes["connection"]`), or by hand for development:

    alembic -c store/alembic.ini -x url=sqlite:///$HOME/.cache/voco/voco.db upgrade head
    alembic -c store/alembic.ini -x url=sqlite:////tmp/scratch.db revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from alembic import context

from store.models import Base

target_metadata = Base.metadata
PG_LOCK_ID = 746_239_004  # serialises concurrent upgrades on PostgreSQL


def _run(connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_ID})")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from store.db import make_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the database: alembic -c store/alembic.ini -x url=sqlite:///path/voco.db ...")
    with make_engine(url).begin() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
run_online()
