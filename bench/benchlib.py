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
    (batch-size count and sum: events per commit = sum / count; the
    commits' seconds in all)."""
    text = urllib.request.urlopen("http://%s:%d/metrics" % tuple(addr), timeout=30) \
        .read().decode()
    out = {}
    for line in text.splitlines():
        for name in ("guardline_receiver_store_commit_batch_size_count",
                     "guardline_receiver_store_commit_batch_size_sum",
                     "guardline_receiver_store_commit_seconds_sum"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out


# -- the receiver under test: this tree's, or another checkout's ----------------------


def tree_env(tree: str | None) -> dict | None:
    """The environment that makes ``python -m receiver.cli`` (and anything
    else run with it) import ``receiver`` and ``protocol`` from the checkout
    ``tree`` instead of this one: PYTHONPATH puts it first and PYTHONSAFEPATH
    keeps the working directory out of sys.path.  Used to run the tree
    before a change with the same benchmark and load generator, one after
    the other on the same machine.  None (this tree): the inherited one."""
    if not tree:
        return None
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"
    env["PYTHONPATH"] = os.path.abspath(tree)
    return env


def tree_commit(tree: str | None) -> str:
    import subprocess  # noqa: PLC0415

    r = subprocess.run(["git", "-C", tree or ROOT, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", tree or ROOT, "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True).stdout
    return r.stdout.strip() + ("+changes" if dirty.strip() else "")


def parse_trees(specs) -> list[tuple[str, str | None]]:
    """``--receiver-tree LABEL=DIR`` options -> [(label, dir)]; none given:
    [("this", None)], the receiver of this checkout."""
    out = []
    for s in specs or ():
        label, sep, d = s.partition("=")
        if not sep or not label or not os.path.isdir(d):
            raise SystemExit("--receiver-tree wants LABEL=DIR (a checkout), got %r" % s)
        out.append((label, os.path.abspath(d)))
    return out or [("this", None)]


def add_tree_options(ap, tree_help: str, profile_help: str) -> None:
    """The options every receiver benchmark takes to compare checkouts and
    profile them: ``--receiver-tree LABEL=DIR`` (repeatable) and
    ``--profile PREFIX``."""
    ap.add_argument("--receiver-tree", action="append", metavar="LABEL=DIR", help=tree_help)
    ap.add_argument("--profile", metavar="PREFIX", help=profile_help)


async def pg_prepare(server_url: str, name: str, accounts) -> str:
    """A fresh database ``name`` on the PostgreSQL server at ``server_url``
    (dropped first if there), the receiver's schema and ``accounts`` in
    it; returns its URL."""
    import urllib.parse  # noqa: PLC0415

    import asyncpg  # noqa: PLC0415

    from receiver.pg_store import PGStore  # noqa: PLC0415

    c = await asyncpg.connect(server_url)
    try:
        await c.execute('DROP DATABASE IF EXISTS "%s"' % name)
        await c.execute('CREATE DATABASE "%s" TEMPLATE template0' % name)
    finally:
        await c.close()
    p = urllib.parse.urlsplit(server_url)
    url = urllib.parse.urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))
    s = PGStore(url)
    await s.open()
    try:
        accts = list(accounts.values())
        for i in range(0, len(accts), 1000):
            await asyncio.gather(*(s.add_account(a) for a in accts[i:i + 1000]))
    finally:
        await s.close()
    return url


def receiver_process(db: str, tmp: str, tree: str | None = None):
    """The receiver under test (``serve`` on ``db``: TCP on a free port,
    metrics on another, warnings only, its log in ``tmp``), of this
    checkout or ``tree``'s; not started yet."""
    from testkit.net import free_port  # noqa: PLC0415
    from testkit.receiver import ReceiverProcess  # noqa: PLC0415

    return ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--metrics",
                                "127.0.0.1:%d" % free_port(), "--log-level", "warning"],
                           log_path=os.path.join(tmp, "receiver.log"), env=tree_env(tree))


def create_accounts_db_in(tree: str | None, db: str, accounts) -> None:
    """create_accounts_db with the store code of ``tree`` (its schema), in a
    child process when that is another checkout."""
    if not tree:
        create_accounts_db(db, accounts)
        return
    import subprocess  # noqa: PLC0415

    rows = [[a.number, a.key.hex(), a.protocol] for a in
            (accounts.values() if isinstance(accounts, dict) else accounts)]
    # benchlib puts this checkout first on sys.path: the tree goes before it
    code = ("import json, sys; sys.path.insert(0, %r); import benchlib; "
            "sys.path.insert(0, %r); from receiver.store import Account; "
            "benchlib.create_accounts_db(sys.argv[1], [Account(n, bytes.fromhex(k), "
            "protocol=p) for n, k, p in json.load(sys.stdin)])"
            % (HERE, os.path.abspath(tree)))
    subprocess.run([sys.executable, "-c", code, db], input=json.dumps(rows), text=True,
                   env=tree_env(tree), check=True)


# -- profiles (py-spy) ---------------------------------------------------------------


class Profiler:
    """py-spy sampling one process (and its children) while the load runs:
    ``py-spy record --subprocesses --format raw`` (collapsed stacks, one
    line per distinct stack with its sample count), stopped with SIGINT.
    ``--nonblocking``: the process is not paused to sample it, so the
    profile costs the receiver next to nothing (at the price of samples
    dropped when a stack changed while it was read: py-spy counts them as
    errors, a few per cent; they are left out, not misattributed)."""

    RATE_HZ = 200

    def __init__(self, pid: int, out_path: str):
        import shutil  # noqa: PLC0415
        import subprocess  # noqa: PLC0415
        import tempfile  # noqa: PLC0415

        exe = os.path.join(os.path.dirname(sys.executable), "py-spy")
        exe = exe if os.path.exists(exe) else shutil.which("py-spy")
        if exe is None:
            raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
        self.out_path = out_path
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        # py-spy's own chatter ("Sampling process ...", "Wrote raw flamegraph
        # data"): kept beside the benchmark's temporary files, not the profile
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
             "--rate", str(self.RATE_HZ), "--format", "raw", "--output", out_path],
            stdout=self.log, stderr=self.log)
        time.sleep(0.5)  # attached before the load starts

    def stop(self) -> str:
        import signal  # noqa: PLC0415

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except Exception:  # noqa: BLE001 - a profiler that hangs must not hang the bench
            self.proc.kill()
        self.log.close()
        return self.out_path


def frame_parts(frame: str) -> tuple[str, str]:
    """'func (path/to/file.py:123)' -> ('func', 'path/to/file.py') with the
    path shortened to what a reader knows (project-relative, or the library
    and module after site-packages / the stdlib directory)."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0] if where else "?"
    for marker in ("site-packages/", "/lib/python3"):
        i = path.find(marker)
        if i >= 0:
            path = path[i + len(marker):]
            if marker.startswith("/lib"):
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    else:
        if path.startswith(ROOT + "/"):
            path = path[len(ROOT) + 1:]
        else:
            for mark in ("/receiver/", "/protocol/"):
                i = path.find(mark)
                if i >= 0:
                    path = path[i + 1:]
                    break
    return name, path


def summarize_profile(raw_path: str, top: int = 20) -> dict:
    """What a py-spy raw profile says: samples; the functions with the most
    samples on top of the stack (self) and in the stack (inclusive); the
    share of samples each source file is in (inclusive)."""
    self_n: dict = {}
    incl_fn: dict = {}
    incl_file: dict = {}
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            n = int(n)
            frames = [fr for fr in stack.split(";")
                      if not fr.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += n
            parts = [frame_parts(fr) for fr in frames]
            leaf = "%s (%s)" % parts[-1]
            self_n[leaf] = self_n.get(leaf, 0) + n
            for key in {"%s (%s)" % p for p in parts}:
                incl_fn[key] = incl_fn.get(key, 0) + n
            for path in {p[1] for p in parts}:
                incl_file[path] = incl_file.get(path, 0) + n

    def ranked(d):
        return [{"what": k, "samples": v, "share": round(v / total, 4)}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]] if total else []

    return {"path": os.path.relpath(raw_path, ROOT), "samples": total,
            "self": ranked(self_n), "inclusive": ranked(incl_fn),
            "files": ranked(incl_file)}


def print_profile(summary: dict, n: int = 12) -> None:
    print("profile %s: %d samples" % (summary["path"], summary["samples"]))
    for title, key in (("self (top of stack)", "self"), ("by file (in the stack)", "files")):
        print("  %s:" % title)
        for r in summary[key][:n]:
            print("    %5.1f %%  %s" % (100 * r["share"], r["what"]))
