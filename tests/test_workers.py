"""``serve --workers N`` (receiver/workers.py; issue 20).

The pool's decisions are fed times and exit statuses (no processes): a
crashed worker restarts after a growing, capped delay, a run that lasted
resets it, a worker failing on the first start or too many starts in a row
stops the pool, and every (state, event) pair outside the table is an
error.

One end-to-end test with real processes, sockets and PostgreSQL (the
``guardline-receiver serve`` CLI):

- three workers started with ``--init`` on an empty database race to
  migrate it: each migration runs once; the ready file names every
  worker (distinct pids, cluster names ``-w1..-w3``, metrics ports) on
  one native TCP port; the console answers on its one port; SIGTERM to
  every process at once (systemd's default) stops them all cleanly;
- the parent killed (``kill -9``): every worker stops cleanly (leases
  handed back), none serves on as an orphan;
- then two workers on one port, 40 panels reporting lockstep over TCP
  and 4 over UDP (one UDP port shared the same way): both
  workers store events (their own /metrics); ``kill -9`` of one: the
  parent logs its status in words and starts it again, its panels
  reconnect and keep reporting; SIGTERM to the parent alone: every worker
  drains and exits, the parent exits 0;
- every event a panel saw ACKed is stored exactly once.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import urllib.request

import pytest

from receiver import workers as wk
from receiver.backoff import Backoff
from receiver.cli_errors import UsageError
from receiver.config import Config
from receiver.testing import make_accounts
from testkit.receiver import ReceiverProcess, import_accounts
from testkit.session_panel import SessionPanel, report_until
from testkit.wait import process_alive, wait_until
from tests.pg_fixture import pg_server, pg_url  # noqa: F401

KILLED = wk.ExitStatus(signal=signal.SIGKILL)
FAILED = wk.ExitStatus(code=1)


def pool(n=2, **kw) -> wk.WorkerPool:
    # no jitter: the delays are the documented steps
    return wk.WorkerPool(n, backoff=lambda: Backoff(wk.RESTART_BASE_S, wk.RESTART_CAP_S,
                                                    rng=lambda: 0.0), **kw)


def up(p: wk.WorkerPool, now: float = 0.0) -> None:
    """Start every worker and have it listen."""
    for k in p.due(now):
        p.spawned(k, 100 + k, now)
    for w in p.workers:
        p.ready(w.number, now)


# -- the pool (sans I/O) ----------------------------------------------------------------


def test_a_crashed_worker_restarts_after_a_growing_capped_delay():
    p = pool()
    assert p.due(0) == [1, 2]
    p.spawned(1, 101, 0)
    p.spawned(2, 102, 0)
    assert p.ready(1, 0.5) is False  # worker 2 does not listen yet
    assert p.ready(2, 0.6) is True  # now the pool is up: the ready file
    assert p.exited(999, KILLED, 1) is None  # not ours

    delays, now, pid = [], 10.0, 102
    for _ in range(7):  # crashes soon after each start
        out = p.exited(pid, KILLED, now)
        assert out.what == "restart" and out.worker == 2 and out.when == "while serving"
        assert out.status.words() == "killed by SIGKILL"
        delays.append(out.delay_s)
        assert p.due(now) == [] and p.next_due() == now + out.delay_s
        now += out.delay_s
        assert p.due(now) == [2]
        pid += 10
        p.spawned(2, pid, now)
        assert p.ready(2, now + 1) is False  # a restart is not the pool coming up
        now += 2
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert p.worker(1).state == wk.READY  # the other one served on

    # after a run longer than STABLE_S the next crash is restarted quickly again
    out = p.exited(pid, FAILED, now + wk.STABLE_S)
    assert out.delay_s == 1 and out.status.words() == "exited with status 1"


def test_failed_starts_stop_the_pool_on_the_first_start_or_after_too_many_in_a_row():
    # the first start: a wrong setting or an unreachable store is told at once
    p = pool()
    p.spawned(1, 101, 0)
    p.spawned(2, 102, 0)
    p.ready(1, 0.2)
    out = p.exited(102, wk.ExitStatus(code=2), 0.3)
    assert out.what == "give up" and out.when == "before it listened, on the first start"
    assert p.gave_up is out and p.stopping and p.due(10) == [] and p.next_due() is None
    assert p.worker(1).state == wk.STOPPING and p.live_pids() == [101]
    assert p.exited(101, wk.ExitStatus(code=0), 1).what == "stopped"
    assert p.done

    # later: a worker that cannot start again is tried MAX_START_FAILURES times
    p = pool(max_start_failures=3)
    up(p)
    now = 100.0
    out = p.exited(102, KILLED, now)
    outcomes = []
    for pid in (200, 201, 202):
        now = p.next_due()
        p.spawned(2, pid, now)
        outcomes.append(p.exited(pid, FAILED, now + 0.5))
    assert [o.what for o in outcomes] == ["restart", "restart", "give up"]
    assert outcomes[0].when == "before it listened (1 of 3 failed starts)"
    assert outcomes[2].when == "before it listened, 3 starts in a row"
    assert p.live_pids() == [101]  # the one to stop

    # a start that succeeds in between counts the failures afresh
    p = pool(max_start_failures=2)
    up(p)
    p.exited(102, KILLED, 10)
    p.spawned(2, 200, p.next_due())
    assert p.exited(200, FAILED, 12).what == "restart"
    p.spawned(2, 201, p.next_due())
    p.ready(2, 20)
    p.exited(201, KILLED, 21)
    p.spawned(2, 202, p.next_due())
    assert p.exited(202, FAILED, 30).what == "restart"


def test_stop_signals_the_running_workers_and_ends_the_waiting_ones():
    p = pool(3)
    up(p)
    p.exited(102, KILLED, 5)  # worker 2 waits for its restart
    assert sorted(p.stop()) == [101, 103]
    assert p.worker(2).state == wk.DONE and not p.done
    assert p.due(1000) == []
    assert p.stop() == [101, 103]  # a second signal changes nothing
    assert p.exited(101, wk.ExitStatus(code=0), 6).what == "stopped"
    out = p.exited(103, wk.ExitStatus(signal=signal.SIGKILL), 7)
    assert out.what == "stopped" and not out.status.clean
    assert p.done


def test_every_state_and_event_outside_the_table_is_an_error():
    events = ("spawned", "ready", "exited", "stop")
    states = (wk.WAITING, wk.STARTING, wk.READY, wk.STOPPING, wk.DONE)
    for s in states:
        for e in events:
            w = wk.Worker(1, Backoff())
            w.state = s
            if (s, e) in wk.TRANSITIONS:
                w.move(e)
                assert w.state == wk.TRANSITIONS[(s, e)]
            else:
                with pytest.raises(wk.PoolError):
                    w.move(e)
    assert set(wk.TRANSITIONS.values()) <= set(states)
    with pytest.raises(wk.PoolError):
        wk.WorkerPool(0)


def test_what_each_worker_gets_and_what_is_refused():
    cfg = Config(tcp=[("127.0.0.1", 7700)], metrics=("0.0.0.0", 9100), web=("0.0.0.0", 9102))
    assert wk.refusal(cfg, 1, shared=False) is None  # one process: as always
    why = wk.refusal(cfg, 2, shared=False)
    assert "needs a PostgreSQL store" in why and "docs/scale-out.md" in why
    assert wk.refusal(cfg, 2, shared=True) is None
    assert "serial" in wk.refusal(Config(serial=["loop://"]), 2, shared=True)
    assert wk.metrics_addresses(cfg, 2) == [("0.0.0.0", 9100), ("0.0.0.0", 9101)]
    with pytest.raises(UsageError, match="port 9102 is a listener's"):
        wk.metrics_addresses(cfg, 3)
    with pytest.raises(UsageError, match="past 65535"):
        wk.metrics_addresses(Config(metrics=("h", 65535)), 2)
    assert wk.metrics_addresses(Config(metrics=("h", 0)), 2) == [("h", 0), ("h", 0)]
    assert wk.metrics_addresses(Config(), 2) == [None, None]
    w2 = wk.worker_config(cfg, 2, "rx-a", ("0.0.0.0", 9101))
    assert (w2.cluster_instance, w2.metrics, w2.reuse_port) == ("rx-a-w2", ("0.0.0.0", 9101),
                                                                True)
    assert cfg.reuse_port is False and cfg.cluster_instance is None  # the parent's untouched

    # port 0 is resolved once, in the parent; the port is held while it runs
    new, held = wk.reserve_ports(Config(tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)]))
    try:
        [(_, tport)] = new.tcp
        [(_, uport)] = new.udp
        assert tport and uport and [s.getsockname()[1] for s in held] == [tport]
    finally:
        for s in held:
            s.close()


# -- the processes -----------------------------------------------------------------------

PANELS = 40  # over TCP
UDP_PANELS = 4
EVENT_GAP_S = 0.05


def _metric(addr, name: str) -> float:
    text = urllib.request.urlopen("http://%s:%d/metrics" % tuple(addr), timeout=10) \
        .read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


async def _rows(url, sql):
    import asyncpg  # noqa: PLC0415

    c = await asyncpg.connect(url)
    try:
        return await c.fetch(sql)
    finally:
        await c.close()


async def test_workers_share_a_port_restart_and_stop_cleanly(pg_url, tmp_path):
    # -- three workers race to create the schema of an empty database
    rx = ReceiverProcess(tmp_path / "race", ["--db", pg_url, "--tcp", "127.0.0.1:0",
                                             "--metrics", "127.0.0.1:0", "--web", "127.0.0.1:0",
                                             "--workers", "3"])
    try:
        ready = rx.start()
        ws = ready["workers"]
        assert [w["worker"] for w in ws] == [1, 2, 3]
        assert len({w["pid"] for w in ws} | {ready["pid"]}) == 4
        assert [w["instance"].rsplit("-", 1)[1] for w in ws] == ["w1", "w2", "w3"]
        assert len({tuple(w["metrics"]) for w in ws}) == 3
        assert len(ready["tcp"]) == 1 and ready["tcp"][0][1] != 0
        # the console: one port for all three (port 0 resolved by the parent)
        for _ in range(6):
            page = urllib.request.urlopen("http://%s:%d/login" % tuple(ready["web"]),
                                          timeout=10)
            assert page.status == 200
        # SIGTERM to every process at once (systemd's default stop)
        assert rx.terminate() == 0
    finally:
        rx.close()
    assert sum(1 for line in rx.log_lines if '"cluster left"' in line) == 3
    migrated = [re.search(r"schema_version=(\d+) worker=(\d)", line).groups()
                for line in rx.log_lines if '"store migrated"' in line]
    versions = [int(v) for v, _ in migrated]
    assert versions == sorted(set(versions)) and versions[0] == 1, migrated  # each once
    [(latest,)] = [tuple(r) for r in await _rows(pg_url, "SELECT MAX(version) FROM "
                                                          "schema_version")]
    assert latest == versions[-1]

    # -- the parent killed: the kernel tells each worker (SIGTERM), and each
    # stops as on an operator's stop, handing its leases back
    rx = ReceiverProcess(tmp_path / "orphans", ["--db", pg_url, "--tcp", "127.0.0.1:0",
                                                "--workers", "2"])
    try:
        ready = rx.start()
        os.kill(ready["pid"], signal.SIGKILL)
        await wait_until(lambda: not any(process_alive(w["pid"]) for w in ready["workers"]), 60,
                         what="every worker ended after its parent")
    finally:
        rx.close()
    assert sum(1 for line in rx.log_lines if '"cluster left"' in line) == 2

    # -- two workers on one port, panels reporting
    accts = make_accounts(PANELS + UDP_PANELS)
    import_accounts(pg_url, accts, tmp_path / "accounts.json")
    rx = ReceiverProcess(tmp_path / "two", ["--db", pg_url, "--tcp", "127.0.0.1:0",
                                            "--udp", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                                            "--workers", "2"],
                         log_path=str(tmp_path / "two.log"))
    panels = {n: SessionPanel(n, a.key, "127.0.0.1", 0, ack_timeout_ms=500,
                              max_backoff_ms=1000,
                              transport="tcp" if n <= PANELS else "udp")
              for n, a in accts.items()}
    stop = asyncio.Event()
    tasks: list = []
    try:
        ready = rx.start()
        parent = ready["pid"]
        w1, w2 = ready["workers"]
        for p in panels.values():
            p.port = ready[p.transport][0][1]
            if p.transport == "udp":
                await p.connect()

        tasks = [asyncio.create_task(report_until(p, stop, EVENT_GAP_S))
                 for p in panels.values()]
        await wait_until(lambda: all(len(p.acked) >= 3 for p in panels.values()), 60,
                         what="every panel reporting")
        # the kernel gave connections to both workers, and each stored events
        stored = [_metric(w["metrics"], "guardline_receiver_events_total") for w in (w1, w2)]
        assert all(n > 0 for n in stored), stored
        open_on_2 = _metric(w2["metrics"], "guardline_receiver_connections")
        assert 0 < open_on_2 < PANELS

        # -- kill -9 worker 2: the parent starts it again, its panels come back
        os.kill(w2["pid"], signal.SIGKILL)
        at_kill = {n: len(p.acked) for n, p in panels.items()}

        def restarted():
            return any("worker listening again" in line and "worker=2" in line
                       for line in rx.log_lines)
        await wait_until(restarted, 60, what="worker 2 started again",
                         seen=lambda: rx.log_lines[-5:])
        [crash] = [line for line in rx.log_lines if "worker ended unasked" in line]
        assert 'status="killed by SIGKILL"' in crash and "worker=2" in crash, crash
        new_pid = int(re.findall(r'"worker started" worker=2 pid=(\d+)',
                                 "\n".join(rx.log_lines))[-1])
        assert new_pid != w2["pid"] and os.getpgid(new_pid) == os.getpgid(parent)
        await wait_until(lambda: all(len(p.acked) >= at_kill[n] + 3
                                     for n, p in panels.items()), 60,
                         what="every panel reporting after the kill")
        assert 0 < sum(1 for p in panels.values() if p.reconnects) < PANELS

        # -- SIGTERM to the parent alone, panels still sending
        os.kill(parent, signal.SIGTERM)
        rc = await asyncio.to_thread(rx.proc.wait, 60)
        assert rc == 0, rx.tail()
        for pid in (w1["pid"], new_pid):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in panels.values():
            await p.close()
        rx.close()
    log = "\n".join(rx.log_lines)
    assert log.count("msg=\"worker stopped\"") == 2
    assert log.count('status="exited with status 0"') == 2
    assert "level=error" not in log and "Traceback" not in log

    # every ACKed event stored exactly once
    rows = await _rows(pg_url, "SELECT account, seq FROM events WHERE source = 'panel'")
    stored_keys = [(r["account"], r["seq"]) for r in rows]
    assert len(stored_keys) == len(set(stored_keys))
    acked = {(str(n), s) for n, p in panels.items() for s in p.acked}
    assert acked <= set(stored_keys)
    assert len(acked) >= 6 * PANELS


def test_one_worker_is_the_lone_receiver(tmp_path):
    """--workers 1 (the default) is today's single process: no parent, no
    reuse_port, the ready file as before."""
    rx = ReceiverProcess(tmp_path / "one.db", ["--tcp", "127.0.0.1:0", "--workers", "1"])
    try:
        ready = rx.start()
        assert "workers" not in ready and ready["pid"] == rx.pid
        assert rx.terminate() == 0
    finally:
        rx.close()
