"""Which backend keeps the console's users, audit log and sessions: the
SQLite file of an SQLite receiver (``receiver.web.users``), the PostgreSQL
database of a PostgreSQL one (``receiver.web.pg_users``, which also shares
the sessions between receivers).  The console asks with the receiver
(:func:`open_user_store`), the CLI with a ``--db`` value
(:func:`user_store_for`).
"""

from __future__ import annotations

from receiver.sqlite_store import SQLiteStore
from receiver.store import is_url
from receiver.web.users import SQLiteUserStore, UserStore


def db_path_of(receiver) -> str:
    """The database file the receiver's store uses (SQLite backend): the
    store's ``path`` attribute, else the configured ``db``."""
    path = getattr(receiver.store, "path", None) or getattr(receiver.config, "db", None)
    if not path:
        raise RuntimeError("cannot tell which database file the receiver uses")
    return str(path)


def user_store_for(db: str) -> UserStore:
    """The user store for a ``--db`` value: a ``postgresql://`` URL gets
    the PostgreSQL backend, anything else is an SQLite file."""
    if is_url(db):
        from receiver.web.pg_users import PGUserStore  # noqa: PLC0415 - needs asyncpg

        return PGUserStore(db)
    return SQLiteUserStore(db)


def open_user_store(receiver) -> UserStore:
    """The user store that lives beside the receiver's store: in the same
    SQLite file, or in the same PostgreSQL database."""
    store = receiver.store
    url = getattr(store, "url", None)
    if store is not None and not isinstance(store, SQLiteStore):
        if url is None:
            raise RuntimeError("console users: no user store for %s"
                               % type(store).__name__)
        from receiver.web.pg_users import PGUserStore  # noqa: PLC0415 - needs asyncpg

        return PGUserStore(url)
    return SQLiteUserStore(db_path_of(receiver))
