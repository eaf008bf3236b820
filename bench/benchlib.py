"""Shared pieces of the benchmarks in bench/: process accounting from
/proc (CPU seconds, RSS) without psutil, the machine and its load, account
databases, percentiles and the spread of repeated runs, JSON results.

Benchmarks are not tests: they print figures and write JSON under
bench/results/.  They share a 2-core machine with other work, so each
records the load average before and after it ran, and repeated runs are
reported as median with min..max, never as one number alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CLK_TCK = os.sysconf("SC_CLK_TCK")


async def read_events(db: str, keep=None, account: str | None = None) -> list:
    """The stored events (receiver.records.Event) of the store ``db`` (an
    SQLite path or a postgresql:// URL) that ``keep(event)`` accepts, read
    through the event feed (Store.events_after): benchmarks check what was
    stored the way any reader outside the store does, never by SQL."""
    from receiver.store_factory import make_store  # noqa: PLC0415

    store = make_store(db, create=False)
    await store.open()
    try:
        return [e async for e in store.iter_events(account)
                if keep is None or keep(e)]
    finally:
        await store.close()


def stored_events(db: str, keep=None, account: str | None = None) -> list:
    """:func:`read_events` for code outside an event loop."""
    return asyncio.run(read_events(db, keep, account))


def stored_counts(db: str) -> tuple[int, int]:
    """(events stored, distinct (account, seq) among them): equal when
    every event was stored exactly once."""
    evs = stored_events(db)
    return len(evs), len({(e.account, e.seq) for e in evs if e.seq is not None})
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (its threads included), from
    /proc/PID/stat fields 14 and 15 (clock ticks)."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem(pid: int) -> dict:
    """{'rss_kib', 'hwm_kib'} from /proc/PID/status (VmRSS, VmHWM: peak)."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm_kib"] = int(line.split()[1])
    return out


def probe(pid: int) -> dict:
    d = proc_mem(pid)
    d["cpu_s"] = proc_cpu_s(pid)
    d["t"] = time.time()
    return d


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine() -> dict:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import resource  # noqa: PLC0415

    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem_kib / 2**20, 1),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE))}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def pct(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def spread(values) -> dict | None:
    """median, min, max of repeated runs (None values dropped)."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def write_json(path: str, doc: dict) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    return path


def create_accounts_db(db: str, accounts) -> None:
    """Create the store at ``db`` with ``accounts`` (receiver.store.Account),
    added concurrently so group commit batches them."""
    from receiver.sqlite_store import SQLiteStore  # noqa: PLC0415

    async def go():
        s = SQLiteStore(db)
        await s.open()
        try:
            accts = list(accounts.values() if isinstance(accounts, dict) else accounts)
            for i in range(0, len(accts), 5000):
                await asyncio.gather(*(s.add_account(a) for a in accts[i:i + 5000]))
        finally:
            await s.close()

    asyncio.run(go())


def fmt_spread(s: dict | None, unit: str = "", digits: int = 0) -> str:
    if not s:
        return "-"
    f = "%%.%df" % digits
    if s["n"] == 1:
        return (f % s["median"]) + unit
    return "%s%s (%s..%s)" % (f % s["median"], unit, f % s["min"], f % s["max"])


def commit_metrics(addr) -> dict:
    """The receiver's group-commit counters from its Prometheus endpoint
    (batch-size count and sum: events per commit = sum / count)."""
    text = urllib.request.urlopen("http://%s:%d/metrics" % tuple(addr), timeout=30) \
        .read().decode()
    out = {}
    for line in text.splitlines():
        for name in ("guardline_receiver_store_commit_batch_size_count",
                     "guardline_receiver_store_commit_batch_size_sum"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out
