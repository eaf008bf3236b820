"""Chaos scenarios shared by the quick tests (tests/test_chaos_*.py) and
the longer runs in bench/chaos.py.  Each scenario drives the real
receiver (a subprocess started through the CLI, or in-process where the
fault needs the store's own connection) or the real firmware (under the
MicroPython VM, or its queue module under CPython), injects a fault, and
returns a report with the counts that matter: events sent, ACKed, stored,
lost, duplicated.  The callers assert on the report.

Invariants checked (docs/receiver.md, docs/firmware.md):

- the receiver ACKs only after commit: an event a panel saw ACKed is on
  disk at the moment of a SIGKILL, exactly once;
- panels keep what was not ACKed and deliver it after a restart; the
  unique (account, dedupe_key) key keeps retransmissions single;
- the panel's persistent queue loses nothing committed and not ACKed when
  power is cut at any byte of any write, and never returns a corrupt
  record;
- a store that cannot write (disk full, read-only) turns ACKs into NAK
  busy and says why; it recovers by itself with nothing lost;
- garbage from many connections does not take the receiver down, grow its
  memory without bound, or stop it serving real panels.

Every loop here is bounded in count and in time; all traffic is loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):  # the repository, and bench/ (benchlib)
    if _p not in sys.path:
        sys.path.insert(0, _p)

from protocol.lean import glwire as w  # noqa: E402
from benchlib import read_events  # noqa: E402
from receiver.testing import make_accounts  # noqa: E402
from testkit.net import free_port  # noqa: E402
from testkit.panel import PanelProcess  # noqa: E402
from testkit.receiver import ReceiverProcess  # noqa: E402
from testkit.session_panel import SessionPanel, event_msg  # noqa: E402
from testkit.wait import wait_until  # noqa: E402


# -- helpers ---------------------------------------------------------------------------------


async def create_db(db: str, accounts) -> None:
    from receiver.sqlite_store import SQLiteStore  # noqa: PLC0415

    s = SQLiteStore(db)
    await s.open()
    try:
        await asyncio.gather(*(s.add_account(a) for a in accounts.values()))
    finally:
        await s.close()


async def stored_rows(db: str) -> list[tuple[str, int]]:
    """(account, seq) of every panel event in the store, read through the
    event feed with a store of its own (works on a database a SIGKILLed
    writer left behind, and beside a running receiver)."""
    return [(e.account, e.seq) for e in await read_events(db, lambda e: e.source == "panel")]


async def highest_seqs(db: str) -> dict[str, int]:
    """{account: the highest sequence the receiver committed}, through the
    store's API (Store.list_accounts), as the receiver itself reads it."""
    from receiver.store_factory import make_store  # noqa: PLC0415

    store = make_store(db, create=False)
    await store.open()
    try:
        return {a.number: a.highest_seq for a in await store.list_accounts()}
    finally:
        await store.close()


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def healthz(addr) -> int:
    try:
        return urllib.request.urlopen("http://%s:%d/healthz" % tuple(addr), timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def count_report(sent: set, acked: set, rows: list) -> dict:
    stored = set(rows)
    return {"sent": len(sent), "acked": len(acked), "stored": len(rows),
            "stored_distinct": len(stored), "duplicates": len(rows) - len(stored),
            "lost": len(sent - stored), "acked_not_stored": len(acked - stored),
            "unexpected": len(stored - sent)}


# -- 1. kill -9 the receiver under load ---------------------------------------------------------


async def kill_restart(tmp: str, panels: int = 20, events: int = 30,
                       kill_fractions=(0.15, 0.45, 0.75), seed: float | None = None,
                       deadline_s: float = 120.0) -> dict:
    """Panels (testkit.session_panel.SessionPanel: lockstep, reconnecting) each
    deliver ``events`` events while the receiver subprocess is SIGKILLed
    each time the ACKed total passes a fraction in ``kill_fractions``, and
    restarted on the same port.  At each kill the ACKed set is compared with
    the database as the dead process left it."""
    rng = random.Random(seed)
    db = os.path.join(tmp, "rx.db")
    accts = make_accounts(panels, first=5000)
    await create_db(db, accts)
    port = free_port()
    log = os.path.join(tmp, "receiver.log")
    args = ["--tcp", "127.0.0.1:%d" % port, "--log-level", "warning"]
    proc = ReceiverProcess(db, args, log_path=log)
    proc.start()
    sims = {int(n): SessionPanel(int(n), a.key, "127.0.0.1", port, ack_timeout_ms=500,
                                 max_backoff_ms=1000) for n, a in
            ((a.number, a) for a in accts.values())}
    total = panels * events
    sent = {(str(n), s) for n in sims for s in range(1, events + 1)}

    async def run(p):
        for seq in range(1, events + 1):
            # a little jitter so panels do not move in step
            if rng.random() < 0.2:
                await asyncio.sleep(rng.random() * 0.01)
            await p.deliver(seq, event_msg(code=602 if seq % 7 else 130, zone=seq % 50),
                            deadline_s=deadline_s)

    def acked():
        return {(str(n), s) for n, p in sims.items() for s in p.acked}

    kills = []
    tasks = [asyncio.create_task(run(p)) for p in sims.values()]
    try:
        for frac in kill_fractions:
            target = int(total * frac)
            await wait_until(lambda: len(acked()) >= target or all(t.done() for t in tasks),
                             deadline_s, what="%d events ACKed before kill" % target)
            proc.kill()
            seen = acked()
            rows = await stored_rows(db)
            k = {"at_fraction": frac, "acked_at_kill": len(seen), "stored_at_kill": len(rows),
                 "acked_missing_from_store": len(seen - set(rows)),
                 "duplicates_in_store": len(rows) - len(set(rows))}
            kills.append(k)
            proc.close()
            proc = ReceiverProcess(db, args, log_path=log)
            proc.start()
        await asyncio.wait_for(asyncio.gather(*tasks), deadline_s)
        rc = proc.terminate()
    finally:
        for t in tasks:
            t.cancel()
        proc.close()
        for p in sims.values():
            await p.close()
    rep = count_report(sent, acked(), await stored_rows(db))
    rep.update({"panels": panels, "events_per_panel": events, "kills": kills,
                "transmissions": sum(p.session.sent for p in sims.values()),
                "reconnects": sum(p.reconnects for p in sims.values()),
                "final_exit_code": rc})
    hs = await highest_seqs(db)
    rep["replay_state_ok"] = all(hs[str(n)] == events for n in sims)
    assert total == rep["sent"]
    return rep


# -- 2a. power cut inside the persistent queue (CPython, byte-exact) ------------------------------


class PowerLost(Exception):
    pass


class _Flash:
    """Opener for pqueue.PersistentQueue whose files stop taking writes after
    ``budget`` more bytes: the write in progress lands up to that byte (a
    torn write), then every later write raises PowerLost."""

    def __init__(self, budget: int):
        self.budget = budget

    def __call__(self, path, mode):
        flash = self

        class F:
            def __init__(self):
                self.f = open(path, mode)

            def write(self, b):
                b = bytes(b)
                if flash.budget <= 0:
                    raise PowerLost()
                if len(b) > flash.budget:
                    self.f.write(b[:flash.budget])
                    self.f.flush()
                    flash.budget = 0
                    raise PowerLost()
                flash.budget -= len(b)
                n = self.f.write(b)
                self.f.flush()
                return n

            def __getattr__(self, name):
                return getattr(self.f, name)

        return F()


def _pqueue():
    from firmware import DEVICE_DIR  # noqa: PLC0415

    if DEVICE_DIR not in sys.path:
        sys.path.append(DEVICE_DIR)
    # (pyright checks host code without the device directory on its path)
    import pqueue  # noqa: PLC0415  # pyright: ignore[reportMissingImports]

    return pqueue


def queue_integrity(path: str, slots: int) -> dict:
    """Read a queue file slot by slot: committed records ('C') whose CRC
    fails are corruption (a torn write must never look committed)."""
    pq = _pqueue()
    bad = committed = written = 0
    with open(path, "rb") as f:
        data = f.read()
    for i in range(slots):
        s = data[i * pq.SLOT:(i + 1) * pq.SLOT]
        if len(s) < pq.SLOT or s[0] not in (0x51, 0x45):  # an event, one with a position
            continue
        if s[1] == 0x43:
            committed += 1
            if int.from_bytes(s[60:64], "big") != pq.slot_crc(bytearray(s)):
                bad += 1
        elif s[1] == 0x50:
            written += 1
    return {"committed_slots": committed, "uncommitted_slots": written, "corrupt": bad}


def _fields(m):
    return (m["qualifier"], m["code"], m["partition"], m["zone"], m["event_time"], m["text"])


def pqueue_power_cuts(tmp: str, cuts: int = 200, slots: int = 16,
                      seed: float | None = None) -> dict:
    """Random appends and ACKs on the real firmware queue module, the power
    cut at a random byte of the write stream, ``cuts`` times in a row on the
    same file (each boot continues where the last left).  After every boot:
    every record committed and not ACKed is there, intact; an ACKed record
    does not come back; the operation cut mid-way either happened whole or
    not at all; no committed slot is corrupt."""
    pq = _pqueue()
    rng = random.Random(seed)
    path = os.path.join(tmp, "queue.dat")
    model: dict[int, tuple] = {}  # committed, not ACKed: seq -> fields
    next_seq = 1
    ops = appends = acks = 0
    violations: list[str] = []
    torn_seen = 0
    max_pending = 0
    for cut in range(cuts):
        flash = _Flash(rng.randrange(0, 64 * 12))
        in_flight = None
        try:
            q = pq.PersistentQueue(path, slots, opener=flash)
            while True:
                ops += 1
                if model and (len(model) >= slots - 2 or rng.random() < 0.4):
                    seq = rng.choice(sorted(model))
                    in_flight = ("ack", seq, model[seq])
                    q.ack(seq)
                    del model[seq]
                    acks += 1
                else:
                    seq = next_seq
                    next_seq += 1
                    text = rng.choice([None, "vault door", "zone %d" % seq, "Tür 3"])
                    f = (rng.choice([1, 3]), rng.choice([130, 122, 602, 350]),
                         rng.randrange(0, 5), rng.randrange(0, 99), 1_700_000_000 + seq, text)
                    in_flight = ("append", seq, f)
                    q.append(seq, *f)
                    model[seq] = f
                    appends += 1
                max_pending = max(max_pending, len(model))
                in_flight = None
        except PowerLost:
            pass
        # boot: read the flash back with a plain file
        integ = queue_integrity(path, slots)
        if integ["corrupt"]:
            violations.append("cut %d: %d corrupt committed slots" % (cut, integ["corrupt"]))
        q = pq.PersistentQueue(path, slots)
        torn_seen += q.torn
        got = {s: _fields(q.read(q.find(s))) for s in q.seqs()}
        q.close()
        for seq, f in model.items():
            if in_flight and in_flight[0] == "ack" and in_flight[1] == seq:
                continue
            if got.get(seq) != f:
                violations.append("cut %d: ACK-pending seq %d %s" % (
                    cut, seq, "lost" if seq not in got else "changed"))
        if in_flight is not None:
            kind, seq, f = in_flight
            if seq in got and got[seq] != f:
                violations.append("cut %d: %s of seq %d left a changed record" % (cut, kind, seq))
            if kind == "ack" and seq not in got:
                model.pop(seq, None)  # the ACK landed
            if kind == "append" and seq in got:
                model[seq] = f  # the append landed: it is committed now
        extra = set(got) - set(model)
        if extra:
            violations.append("cut %d: records came back that were ACKed or never "
                              "committed: %s" % (cut, sorted(extra)))
        # continue from what the flash holds
        model = {s: got[s] for s in model if s in got}
    return {"cuts": cuts, "operations": ops, "appends": appends, "acks": acks,
            "max_pending": max_pending, "torn_slots_found_at_boot": torn_seen,
            "pending_at_end": len(model), "violations": violations[:20],
            "n_violations": len(violations)}


# -- 2b. power cut of the panel firmware under the MicroPython VM ---------------------------------


def _boot(vm: PanelProcess) -> None:
    """Power on and wait until the firmware answers."""
    vm.start()
    vm.ctl({"cmd": "ping"}, timeout=30)


def _cut(vm: PanelProcess, how: str) -> int:
    """Cut the power: the firmware's own power cycle (it ends at once,
    between two writes) or SIGKILL (anywhere); the VM's exit status."""
    if how == "power_cycle":
        try:
            vm.ctl({"cmd": "power_cycle"}, timeout=5)
        except (OSError, RuntimeError):
            pass  # it may go before its answer leaves
        return vm.wait_exit(15)
    return vm.kill() or 0


def panel_power_cuts(tmp: str, cuts: int = 6, seed: float | None = None,
                     deadline_s: float = 60.0) -> dict:
    """The bank panel firmware under the MicroPython VM reports to a tiny
    receiver that mostly does not ACK, so its flash queue fills; zones are
    toggled so it keeps writing, and the power is cut (``power_cycle``
    control command, or SIGKILL of the VM: a cut between any two of its
    writes) at random moments.  Between the cut and the next boot the
    queue file is read with the firmware's own module under CPython: every
    record there is ACK-pending and must reach the receiver (be ACKed)
    after the boots, with the same content; no committed slot may be
    corrupt.  At the end the receiver ACKs everything and the queue must
    drain."""
    from testkit.configs import TEST_KEY, scenario_config  # noqa: PLC0415
    from testkit.tiny_receiver import TinyReceiver  # noqa: PLC0415

    pq = _pqueue()
    rng = random.Random(seed)
    rx = TinyReceiver(4242, TEST_KEY)
    state = os.path.join(tmp, "flash")
    os.makedirs(state, exist_ok=True)
    cfg = scenario_config(rx.port, timings={"heartbeat_s": 600, "backup_heartbeat_s": 600,
                                            "ack_timeout_ms": 300, "max_backoff_ms": 600})
    cfg_path = os.path.join(tmp, "panel.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    # the VM alone (no launcher restarting it): each exit is seen, and the
    # flash read, before the next boot
    vm = PanelProcess(cfg_path, state, log_path=os.path.join(tmp, "console.log"),
                      supervised=False, start=False)
    must_arrive: dict[int, tuple] = {}
    snapshots = []
    corrupt = 0
    # hold-up, panic, fire alarm (24-hour) and sensor tamper (open loop) on
    # the others: each change is an event whatever the arming state
    zones = {1: "tamper", 2: "tamper", 3: "tamper", 4: "alarm", 5: "alarm", 6: "alarm"}
    zstate = {z: False for z in zones}
    try:
        _boot(vm)
        for cut in range(cuts):
            # the receiver ACKs in one period out of three: the queue fills
            # and drains, so cuts land in appends and in ACK marks
            rx.ack = cut % 3 == 2
            end = time.monotonic() + rng.uniform(0.4, 1.2)
            while time.monotonic() < end:
                z = rng.choice(sorted(zones))
                zstate[z] = not zstate[z]
                vm.ctl({"cmd": "zone", "zone": z, "state": zones[z] if zstate[z] else "normal"})
                time.sleep(rng.uniform(0.06, 0.15))  # past the 50 ms debounce
            how = rng.choice(["power_cycle", "sigkill"])
            rc = _cut(vm, how)
            qpath = os.path.join(state, "queue.dat")
            integ = queue_integrity(qpath, pq.DEFAULT_SLOTS) if os.path.exists(qpath) else {
                "corrupt": 0, "committed_slots": 0}
            corrupt += integ["corrupt"]
            pending = {}
            if os.path.exists(qpath):
                snap = os.path.join(tmp, "snap.dat")
                shutil.copyfile(qpath, snap)
                q = pq.PersistentQueue(snap, pq.DEFAULT_SLOTS)
                pending = {s: _fields(q.read(q.find(s))) for s in q.seqs()}
                q.close()
            for s, f in pending.items():
                must_arrive.setdefault(s, f)
            snapshots.append({"cut": how, "exit": rc, "pending": len(pending),
                              "corrupt": integ["corrupt"]})
            _boot(vm)
        rx.ack = True
        end = time.monotonic() + deadline_s
        while True:
            with rx.lock:
                missing = [s for s in must_arrive if s not in rx.acked_events]
            depth = vm.ctl({"cmd": "state", "brief": True})["reporter"]["queue"]
            if not missing and depth == 0:
                break
            if time.monotonic() > end:
                break
            time.sleep(0.1)
        with rx.lock:
            acked = dict(rx.acked_events)
        changed = [s for s, f in must_arrive.items() if s in acked and (
            acked[s]["qualifier"], acked[s]["code"], acked[s]["partition"], acked[s]["zone"])
            != f[:4]]
        final_depth = vm.ctl({"cmd": "state", "brief": True})["reporter"]["queue"]
    finally:
        vm.close()
        rx.close()
    return {"cuts": cuts, "snapshots": snapshots,
            "ack_pending_at_cuts": len(must_arrive),
            "lost": len(missing), "lost_seqs": missing[:20], "changed": len(changed),
            "corrupt_slots": corrupt, "events_acked_total": len(acked),
            "queue_depth_at_end": final_depth}


# -- 3. disk full (tmpfs) and read-only store ---------------------------------------------------


def _mount_tmpfs(path: str, size: str) -> bool:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                       capture_output=True, text=True)
    return r.returncode == 0


def _umount(path: str) -> None:
    subprocess.run(["umount", "-l", path], capture_output=True)


def _fill(path: str) -> int:
    """Write a filler file until the filesystem is full; returns bytes."""
    n = 0
    chunk = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                k = os.write(fd, chunk)
            except OSError:
                break
            if k <= 0:
                break
            n += k
        for size in (4096, 512, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) <= 0:
                        break
                    n += size
                except OSError:
                    break
    finally:
        os.close(fd)
    return n


def tmpfs_available() -> bool:
    d = tempfile.mkdtemp(prefix="gl-tmpfs-probe-")
    try:
        ok = _mount_tmpfs(d, "1m")
        if ok:
            _umount(d)
        return ok
    finally:
        os.rmdir(d)


async def disk_full(tmp: str, panels: int = 6, events: int = 25, size: str = "24m",
                    deadline_s: float = 90.0) -> dict:
    """The receiver subprocess's database on a small tmpfs; panels deliver
    events; the filesystem is filled to the last byte mid-stream; the
    receiver must NAK busy and say why (log, /healthz 503); the filler is
    removed and everything must be delivered, each event stored once."""
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt, exist_ok=True)
    if not _mount_tmpfs(mnt, size):
        raise RuntimeError("cannot mount tmpfs (needs root / CAP_SYS_ADMIN)")
    proc = None
    sims = {}
    tasks = []
    try:
        db = os.path.join(mnt, "rx.db")
        accts = make_accounts(panels, first=7000)
        await create_db(db, accts)
        log = os.path.join(tmp, "receiver.log")
        mport = free_port()
        proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--metrics",
                                    "127.0.0.1:%d" % mport], log_path=log)
        proc.start()
        host, port = proc.tcp
        sims = {int(a.number): SessionPanel(int(a.number), a.key, host, port, ack_timeout_ms=300,
                                            max_backoff_ms=1000) for a in accts.values()}
        sent = {(str(n), s) for n in sims for s in range(1, events + 1)}

        async def run(p):
            for seq in range(1, events + 1):
                await p.deliver(seq, event_msg(code=602, zone=seq), deadline_s=deadline_s)
                await asyncio.sleep(0.02)

        def acked():
            return {(str(n), s) for n, p in sims.items() for s in p.acked}

        def busy_naks():
            return sum(1 for p in sims.values() for n in p.naks if n.reason == w.NAK_BUSY)

        tasks = [asyncio.create_task(run(p)) for p in sims.values()]
        await wait_until(lambda: len(acked()) >= panels * events // 5, deadline_s,
                     what="a fifth of the events ACKed before the disk fills")
        filler = os.path.join(mnt, "filler")
        filled = _fill(filler)
        acked_at_full = len(acked())
        await wait_until(lambda: busy_naks() >= 3, deadline_s,
                         what="NAK busy once the disk is full")
        health_full = healthz(proc.ready["metrics"])
        acked_while_full = len(acked()) - acked_at_full
        rows_full = await stored_rows(db)
        acked_ok_while_full = acked() <= set(rows_full)
        await asyncio.sleep(0.5)  # stay full a moment under retries
        os.unlink(filler)
        await asyncio.wait_for(asyncio.gather(*tasks), deadline_s)
        await wait_until(lambda: healthz(proc.ready["metrics"]) == 200, 30,
                         what="/healthz 200 again")
        health_after = healthz(proc.ready["metrics"])
        rc = proc.terminate()
        rows = await stored_rows(db)
        with open(log) as f:
            text = f.read()
        rep = count_report(sent, acked(), rows)
        rep.update({
            "fault": "tmpfs of %s filled to the last byte (%d filler bytes)" % (size, filled),
            "busy_naks": busy_naks(), "acked_in_the_moment_it_filled": acked_while_full,
            "acked_subset_of_store_while_full": acked_ok_while_full,
            "healthz_while_full": health_full, "healthz_after": health_after,
            "log_says_failing": "store failing" in text,
            "log_says_full": "full" in text.lower(),
            "log_says_recovered": "store recovered" in text,
            "nak_busy_logged": "NAK busy" in text, "exit_code": rc})
        return rep
    finally:
        for t in tasks:
            t.cancel()
        for p in sims.values():
            await p.close()
        if proc is not None:
            proc.close()
        _umount(mnt)


async def read_only_store(tmp: str, panels: int = 6, events: int = 20,
                          deadline_s: float = 60.0) -> dict:
    """The store turned read-only under load (SQLite's own ``PRAGMA
    query_only`` on the receiver's writing connection, in-process: a
    read-only remount is refused while the database is open for writing),
    then writable again."""
    from receiver.app import Receiver  # noqa: PLC0415
    from receiver.config import Config  # noqa: PLC0415
    from receiver.sqlite_store import SQLiteStore  # noqa: PLC0415

    db = os.path.join(tmp, "ro.db")
    accts = make_accounts(panels, first=8000)
    await create_db(db, accts)
    rx = Receiver(Config(db=db, tcp=[("127.0.0.1", 0)]))
    await rx.start()
    store = rx.store
    assert isinstance(store, SQLiteStore)  # a file path: PRAGMA query_only is SQLite's
    sims = {}
    tasks = []
    try:
        host, port = rx.addresses["tcp"][0]
        sims = {int(a.number): SessionPanel(int(a.number), a.key, host, port, ack_timeout_ms=300,
                                            max_backoff_ms=1000) for a in accts.values()}
        sent = {(str(n), s) for n in sims for s in range(1, events + 1)}

        async def run(p):
            for seq in range(1, events + 1):
                await p.deliver(seq, event_msg(code=602, zone=seq), deadline_s=deadline_s)
                await asyncio.sleep(0.02)

        def acked():
            return {(str(n), s) for n, p in sims.items() for s in p.acked}

        def busy_naks():
            return sum(1 for p in sims.values() for n in p.naks if n.reason == w.NAK_BUSY)

        tasks = [asyncio.create_task(run(p)) for p in sims.values()]
        await wait_until(lambda: len(acked()) >= panels * events // 4, deadline_s,
                     what="a quarter ACKed before the store turns read-only")
        await store.run_maintenance(lambda c: c.execute("PRAGMA query_only=1"))
        n_ro = len(acked())
        await wait_until(lambda: busy_naks() >= 3, deadline_s, what="NAK busy while read-only")
        healthy_ro = rx.store.healthy
        last_error = rx.store.last_error
        await asyncio.sleep(0.5)
        acked_while_ro = len(acked()) - n_ro
        await store.run_maintenance(lambda c: c.execute("PRAGMA query_only=0"))
        await asyncio.wait_for(asyncio.gather(*tasks), deadline_s)
        healthy_after = rx.store.healthy
    finally:
        for t in tasks:
            t.cancel()
        for p in sims.values():
            await p.close()
        await rx.stop()
    rep = count_report(sent, acked(), await stored_rows(db))
    rep.update({"fault": "PRAGMA query_only=1 on the writer connection",
                "busy_naks": busy_naks(), "healthy_while_read_only": healthy_ro,
                "last_error": last_error, "acked_while_read_only": acked_while_ro,
                "healthy_after": healthy_after})
    return rep


# -- 4. fuzz the live server ------------------------------------------------------------------


def _mutate(rng: random.Random, frame: bytes, corpus: list) -> bytes:
    b = bytearray(frame)
    k = rng.randrange(9)
    if k == 0:  # flip bits
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif k == 1:  # truncate
        b = b[:rng.randrange(len(b))]
    elif k == 2:  # splice two frames
        o = rng.choice(corpus)
        i = rng.randrange(len(b))
        b = b[:i] + o[rng.randrange(len(o)):]
    elif k == 3:  # a header claiming a huge body
        b[2:] = bytes(rng.randrange(256) for _ in range(len(b) - 2))
    elif k == 4:  # replay as is
        pass
    elif k == 5:  # duplicated sync bytes / garbage prefix
        b = b"GL" * rng.randrange(1, 50) + b
    elif k == 6:  # pure random bytes
        b = bytearray(rng.randbytes(rng.randrange(1, 2048)))
    elif k == 7:  # a frame repeated many times (replays)
        b = b * rng.randrange(2, 20)
    else:  # insert random bytes in the middle
        i = rng.randrange(len(b))
        b = b[:i] + rng.randbytes(rng.randrange(1, 64)) + b[i:]
    return bytes(b)


async def fuzz_live(tmp: str, seconds: float = 8.0, fuzz_conns: int = 40,
                    good_panels: int = 4, max_frames: int = 200_000,
                    seed: float | None = None) -> dict:
    """A receiver subprocess (TCP + UDP) gets random and mutated frames from
    ``fuzz_conns`` concurrent connections (reconnecting whenever it drops
    them) and UDP for ``seconds`` (at most ``max_frames`` frames), while
    ``good_panels`` real panels keep delivering events.  Reported: whether
    it stayed up, RSS before/after, frames sent, the good panels' events
    ACKed and stored."""
    rng = random.Random(seed)
    db = os.path.join(tmp, "fz.db")
    accts = make_accounts(good_panels + 4, first=9000)
    await create_db(db, accts)
    log = os.path.join(tmp, "receiver.log")
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0",
                                "--log-level", "warning"], log_path=log)
    proc.start()
    pid = proc.pid
    host, port = proc.tcp
    uhost, uport = proc.ready["udp"][0]
    numbers = sorted(int(a.number) for a in accts.values())
    good = numbers[:good_panels]
    # valid frames of accounts the receiver knows, as mutation seeds
    corpus = []
    for n in numbers[good_panels:]:
        keys = w.Keys(accts[n].key)
        for s in range(1, 30):
            corpus.append(w.seal(keys, event_msg(code=130, zone=s), n, s, int(time.time()), 0))
            corpus.append(w.seal(keys, {"type": w.MSG_HEARTBEAT, "troubles": 0,
                                        "battery_mv": 13000, "active_path": 1,
                                        "queue_depth": 0, "partitions": [0]},
                                 n, 100 + s, int(time.time()), 0))
    sims = {n: SessionPanel(n, accts[n].key, host, port, ack_timeout_ms=500, max_backoff_ms=1000)
            for n in good}
    stop = asyncio.Event()
    counts = {"frames": 0, "bytes": 0, "connections": 0, "udp": 0}
    seq_next = {n: 1 for n in good}

    async def good_panel(p):
        while not stop.is_set():
            s = seq_next[p.account]
            await p.deliver(s, event_msg(code=602, zone=s % 90), deadline_s=60)
            seq_next[p.account] = s + 1
            await asyncio.sleep(0.05)

    async def fuzzer(i):
        r = random.Random(rng.random())
        while not stop.is_set() and counts["frames"] < max_frames:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            counts["connections"] += 1
            try:
                for _ in range(r.randrange(1, 60)):
                    if stop.is_set() or counts["frames"] >= max_frames:
                        break
                    data = _mutate(r, r.choice(corpus), corpus)
                    writer.write(data)
                    counts["frames"] += 1
                    counts["bytes"] += len(data)
                    await writer.drain()
                    if r.random() < 0.3:
                        try:
                            await asyncio.wait_for(reader.read(4096), 0.01)
                        except asyncio.TimeoutError:
                            pass
                    if reader.at_eof():
                        break
            except (OSError, ConnectionError):
                pass
            finally:
                writer.close()

    async def udp_fuzzer():
        r = random.Random(rng.random())
        loop = asyncio.get_running_loop()
        tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    remote_addr=(uhost, uport))
        try:
            while not stop.is_set() and counts["frames"] < max_frames:
                for _ in range(20):
                    tr.sendto(_mutate(r, r.choice(corpus), corpus)[:1400])
                    counts["frames"] += 1
                    counts["udp"] += 1
                await asyncio.sleep(0.005)
        finally:
            tr.close()

    rss_before = rss_kib(pid)
    tasks = []
    try:
        tasks = [asyncio.create_task(good_panel(p)) for p in sims.values()]
        # warm up: every good panel has an event through before the storm
        await wait_until(lambda: all(seq_next[n] > 2 for n in good), 30,
                         what="good panels warm up")
        rss_warm = rss_kib(pid)
        fz = [asyncio.create_task(fuzzer(i)) for i in range(fuzz_conns)]
        fz.append(asyncio.create_task(udp_fuzzer()))
        acked_before = sum(len(p.acked) for p in sims.values())
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(fz, timeout=30)
        acked_during = sum(len(p.acked) for p in sims.values()) - acked_before
        rss_peak_kib = 0
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss_peak_kib = int(line.split()[1])
        await asyncio.wait(tasks, timeout=60)
        alive = proc.running
        rss_after = rss_kib(pid)
        # and a fresh panel is still served afterwards
        fresh = SessionPanel(numbers[-1], accts[numbers[-1]].key, host, port, ack_timeout_ms=500)
        await fresh.deliver(10_000, event_msg(code=130), deadline_s=30)
        await fresh.close()
        rc = proc.terminate()
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for p in sims.values():
            await p.close()
        proc.close()
    rows = set(await stored_rows(db))
    good_acked = {(str(n), s) for n, p in sims.items() for s in p.acked}
    return {"seconds": seconds, "fuzz_connections": fuzz_conns,
            "frames": counts["frames"], "bytes": counts["bytes"],
            "tcp_connections_opened": counts["connections"], "udp_datagrams": counts["udp"],
            "alive": alive, "exit_code": rc,
            "rss_kib_before": rss_before, "rss_kib_warm": rss_warm,
            "rss_kib_after": rss_after, "rss_kib_peak": rss_peak_kib,
            "good_acked_during_fuzz": acked_during,
            "good_acked": len(good_acked), "good_acked_not_stored": len(good_acked - rows),
            "fresh_panel_served": (str(numbers[-1]), 10_000) in rows,
            "stored_from_fuzz_accounts": len([1 for a, s in rows if int(a) in numbers[
                good_panels:-1]])}
