"""A throwaway PostgreSQL server for the tests (tests/test_pg_*.py).

One server per test session, started with scripts/pg.sh (initdb in a
temporary directory, 127.0.0.1, a free port, fsync off: these tests check
the receiver, not PostgreSQL's durability), or the server named by
``GUARDLINE_TEST_PG`` (a URL whose role may CREATE DATABASE).  Each test
gets a fresh database of its own (``pg_url``), so identities start at 1 and
no test sees another's rows.

Tests are skipped, with the reason, only when the PostgreSQL server
binaries are not installed (scripts/sysdeps.sh installs them on CI) or
asyncpg is missing; any other failure to start the server is an error.

Import the fixtures into a test module:

    from tests.pg_fixture import pg_server, pg_url  # noqa: F401
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import shutil
import subprocess
import tempfile
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_SH = os.path.join(ROOT, "scripts", "pg.sh")
# pg.sh's exit status when it finds no PostgreSQL binaries
NO_BINARIES = 3

_server: dict = {}
_counter = itertools.count(1)


def _start() -> dict:
    if _server:
        return _server
    env_url = os.environ.get("GUARDLINE_TEST_PG")
    if env_url:
        _server.update(url=env_url, dir=None)
        return _server
    d = tempfile.mkdtemp(prefix="glpg-")  # under /tmp: the postgres user can enter it
    r = subprocess.run(["bash", PG_SH, "start", d, "--fast"], capture_output=True, text=True,
                       timeout=120)
    if r.returncode == NO_BINARIES:
        shutil.rmtree(d, ignore_errors=True)
        _server.update(skip=r.stderr.strip() or "PostgreSQL server binaries not found")
        return _server
    if r.returncode != 0:
        raise RuntimeError("scripts/pg.sh start failed (%d): %s%s" % (
            r.returncode, r.stdout, r.stderr))
    _server.update(url=r.stdout.strip().splitlines()[-1], dir=d)
    atexit.register(_stop)
    return _server


def _stop() -> None:
    d = _server.get("dir")
    if d:
        subprocess.run(["bash", PG_SH, "stop", d], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)
        _server["dir"] = None


def with_database(url: str, name: str) -> str:
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


async def _create_database(url: str, name: str) -> None:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(url, timeout=30)
    try:
        await conn.execute('CREATE DATABASE "%s" TEMPLATE template0' % name)
    finally:
        await conn.close()


def new_database(server_url: str) -> str:
    """A fresh, empty database on the server; returns its URL."""
    name = "gl_t%d_%d" % (os.getpid(), next(_counter))
    asyncio.run(_create_database(server_url, name))
    return with_database(server_url, name)


@pytest.fixture(scope="session")
def pg_server() -> str:
    pytest.importorskip("asyncpg", reason="asyncpg not installed (pip install -e '.[postgres]')")
    s = _start()
    if "skip" in s:
        pytest.skip("PostgreSQL not available: %s" % s["skip"])
    return s["url"]


@pytest.fixture
def pg_url(pg_server) -> str:
    return new_database(pg_server)
