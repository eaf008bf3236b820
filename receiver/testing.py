"""Helpers for the receiver's own tests and benchmarks, at the level of its
store and its ``Receiver`` object: accounts with fresh keys, a receiver
started in-process on loopback with port 0, an accounts file for
``accounts import``.

What is process- or wire-level (the receiver as a child process, the
polling helper, free ports, the JSON-lines dispatch sink, panels) is the
test kit's (``testkit``).
"""

from __future__ import annotations

import contextlib
import json
import secrets

from receiver.store import Account
# receiver/web/testing.py (the console's test helpers) imports the dispatch
# sink from here; its one home is the test kit
from testkit.dispatch import JsonLinesSink  # noqa: F401


def make_accounts(n: int, first: int = 1, **fields) -> dict[int, Account]:
    return {i: Account(str(i), secrets.token_bytes(32), **fields)
            for i in range(first, first + n)}


async def add_accounts(store, accounts) -> None:
    for a in accounts.values() if isinstance(accounts, dict) else accounts:
        await store.add_account(a)


@contextlib.asynccontextmanager
async def running_receiver(config, accounts=()):
    """Start a Receiver (config listening on port 0), with ``accounts``
    created first; stop it on exit."""
    from receiver.app import Receiver  # noqa: PLC0415

    rx = Receiver(config)
    await rx.store.open()
    try:
        await add_accounts(rx.store, accounts)
    finally:
        await rx.store.close()
    rx = Receiver(config)
    await rx.start()
    try:
        yield rx
    finally:
        await rx.stop()


def write_accounts_json(path, accounts) -> None:
    rows = [a.to_dict(with_key=True) for a in
            (accounts.values() if isinstance(accounts, dict) else accounts)]
    for r in rows:
        for k in ("highest_seq", "tx_seq", "created_at", "updated_at"):
            r.pop(k)
    with open(path, "w") as f:
        json.dump(rows, f)

