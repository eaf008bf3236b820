"""Which store backend a ``--db`` / ``[store] url`` names, made unopened.

The one module that knows every backend: receiver.store (the interface)
and the backends import nothing of each other, so the store modules have
no import circle.
"""

from __future__ import annotations

from receiver.store import Store, StoreError, is_url


def make_store(db: str, max_batch: int | None = None, metrics=None,
               create: bool = True) -> Store:
    """The backend ``db`` names: a ``postgresql://`` URL selects
    receiver.pg_store (asyncpg, the ``postgres`` extra), anything else is an
    SQLite file path.  ``create``: may ``open`` make a new store (an SQLite
    file, or the schema in an empty PostgreSQL database)?  If not, a missing
    one raises StoreMissing."""
    kw = {"metrics": metrics, "create": create}
    if max_batch is not None:
        kw["max_batch"] = max_batch
    if is_url(db):
        try:
            from receiver.pg_store import PGStore  # noqa: PLC0415
        except ImportError as e:
            raise StoreError("a postgresql:// store needs asyncpg (pip install "
                             "'guardline[postgres]'): %s" % e) from None
        return PGStore(db, **kw)
    from receiver.sqlite_store import SQLiteStore  # noqa: PLC0415

    return SQLiteStore(db, **kw)
