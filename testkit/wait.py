"""Waiting for a condition instead of sleeping a fixed time.

Tests, the HIL harness and the benchmarks poll for what they expect with
a generous deadline and fail with a description of what was last seen;
how long it took is measured and reported, never asserted (STYLE.md,
"Tests").  This is the one polling helper: async (:func:`wait_until`) for
harnesses that share an event loop with what they wait for, sync
(:func:`wait_until_sync`) for threads and plain tests.
"""

from __future__ import annotations

import asyncio
import time

# Generous: a loaded CI machine with two cores running the MicroPython VM,
# a receiver and pytest at once can stall for seconds.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_INTERVAL_S = 0.02


class ConditionTimeout(AssertionError):
    """A polled condition did not hold before its deadline (a test failure)."""


def _message(timeout: float, what: str, pred, seen_text: str) -> str:
    return "condition not met within %.1f s: %s%s" % (
        timeout, what or getattr(pred, "__name__", "condition"), seen_text)


def _seen_text(got) -> str:
    return "; saw: %r" % (got,)


async def _describe(seen) -> str:
    if seen is None:
        return ""
    try:
        got = seen()
        if asyncio.iscoroutine(got):
            got = await got
        return _seen_text(got)
    except Exception as e:  # noqa: BLE001 - the description must not hide the failure
        return "; (could not describe: %s)" % e


def _describe_sync(seen) -> str:
    if seen is None:
        return ""
    try:
        return _seen_text(seen())
    except Exception as e:  # noqa: BLE001 - the description must not hide the failure
        return "; (could not describe: %s)" % e


async def wait_until(pred, timeout: float = DEFAULT_TIMEOUT_S,
                     interval: float = DEFAULT_INTERVAL_S, what: str = "", seen=None):
    """Await until ``pred()`` (sync or async) is truthy; return its value.
    Raises ConditionTimeout (an AssertionError) after ``timeout`` s, naming
    ``what`` and, if given, ``seen()`` (sync or async): a generous bound
    on a condition, not a timing assertion."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > end:
            raise ConditionTimeout(_message(timeout, what, pred, await _describe(seen)))
        await asyncio.sleep(interval)


def wait_until_sync(pred, timeout: float = DEFAULT_TIMEOUT_S,
                    interval: float = DEFAULT_INTERVAL_S, what: str = "", seen=None):
    """:func:`wait_until` for code without an event loop: blocks the
    calling thread between polls.  ``pred`` may raise to end the wait
    early (a process it waits on has died: say so rather than time out)."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise ConditionTimeout(_message(timeout, what, pred, _describe_sync(seen)))
        time.sleep(interval)


def process_alive(pid: int) -> bool:
    """Is process ``pid`` running (neither gone nor a zombie nobody has
    reaped yet)?  A predicate to wait on for a process to end (Linux /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
