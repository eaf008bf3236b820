"""``serve --workers N``: N receiver processes on the same listening ports
(``SO_REUSEPORT``), one PostgreSQL store, kept running by the process the
operator started (issue 20; docs/scale-out.md, "Several workers on one
host").

Each worker is a whole receiver, a member of the cluster like a receiver
on another host (its own name, ``<instance>-w<k>``, in leases and logs): it
takes events from any panel the kernel hands it, ACKs after its own
commit, and supervises the shards it leases.  The kernel spreads new TCP
connections and UDP flows over the workers by a hash of the peer's
address, so one receiver uses every core.

Two parts: :class:`WorkerPool`, the sans-I/O core (which worker to start
when, what an exit means, when to give up), fed explicit times and exit
statuses in tests; and :func:`serve`, the process part that forks the
children, reaps them and feeds the core.

Invariants:

- N > 1 only on a shared (PostgreSQL) store and without serial lines
  (:func:`refusal`): an SQLite store has one writer, a serial line one
  reader.
- Every listening port is resolved once, in the parent, before a worker
  starts: port 0 becomes a concrete port every worker binds, and the
  parent keeps a bound (never listening) ``SO_REUSEPORT`` socket on each
  TCP port while it runs, so a restarted worker finds its port still its
  own.  The console (``--web``) shares its port the same way; ``--metrics``
  gets one port per worker (PORT, PORT+1, ...; port 0: each its own) so a
  scraper reads each worker.
- The parent holds no event loop, no thread and no store connection: it
  forks its workers from a clean process, and a worker is set to get
  SIGTERM if the parent dies (Linux), so none outlives it unasked.
- A worker that exits unasked is logged with its status in words and
  started again after a capped, jittered backoff (receiver.backoff).  A
  worker that fails to start (exits before it listens) on the pool's first
  start, or :data:`MAX_START_FAILURES` times in a row later, stops the
  whole pool: the parent exits with that worker's status (1 or 2), never
  a restart loop.
- SIGTERM or SIGINT: every worker gets SIGTERM and drains as a lone
  receiver does (in-flight commits finish, their ACKs go out, leases are
  handed back); the parent waits for all of them (SIGKILL after
  :data:`STOP_KILL_S`, logged) and exits 0 only if every one stopped
  cleanly.
- ``--ready-file`` is written by the parent once every worker listens: the
  addresses, the parent's pid, and per worker its number, pid, cluster
  name and metrics address.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from receiver.backoff import Backoff
from receiver.cli_errors import UsageError
from receiver.config import Config
from receiver.logfmt import q

_LOGGER = logging.getLogger(__name__)

# A worker that has listened this long before it dies is taken as having
# run well: its backoff starts again from the first step.
STABLE_S = 60.0
# Restart delays: 1 s, 2 s, 4 s ... up to 30 s (plus up to a quarter of
# jitter): quick after a one-off crash, never a hot loop.
RESTART_BASE_S, RESTART_CAP_S = 1.0, 30.0
# Failed starts in a row (exits before listening) after which the pool
# gives up: with the delays above about 15 s of trying, enough for a
# store that restarts, short enough that a wrong setting is told.
MAX_START_FAILURES = 5
# Seconds the parent waits for its workers after SIGTERM before it kills
# them: a worker's own stop waits up to 10 s for in-flight commits
# (receiver.app.STOP_GRACE_S), then closes the store and the cluster.
STOP_KILL_S = 60.0
# How often the parent looks for a starting worker's ready file.
READY_POLL_S = 0.05
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# A worker's states and what moves it (house style: a state machine is a
# table; an event with no entry is our own bug).
WAITING, STARTING, READY, STOPPING, DONE = "waiting", "starting", "ready", "stopping", "done"
TRANSITIONS: dict[tuple[str, str], str] = {
    (WAITING, "spawned"): STARTING,
    (STARTING, "ready"): READY,
    (STARTING, "exited"): WAITING,  # a failed start: again after a backoff, or give up
    (READY, "exited"): WAITING,  # a crash: again after a backoff
    (WAITING, "stop"): DONE,
    (STARTING, "stop"): STOPPING,
    (READY, "stop"): STOPPING,
    (STOPPING, "stop"): STOPPING,
    (DONE, "stop"): DONE,
    (STOPPING, "ready"): STOPPING,  # it came up as we stop: it gets SIGTERM too
    (STOPPING, "exited"): DONE,
}


class PoolError(RuntimeError):
    """Our own misuse of the pool (an event its state has no entry for)."""


@dataclass(frozen=True)
class ExitStatus:
    """How a worker process ended (from ``waitpid``)."""

    code: int | None = None  # its exit status, if it exited
    signal: int | None = None  # the signal that killed it, if one did

    @classmethod
    def from_wait(cls, status: int) -> "ExitStatus":
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(code=os.WEXITSTATUS(status))

    @property
    def clean(self) -> bool:
        return self.code == 0

    def words(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = "signal %d" % self.signal
            return "killed by %s" % name
        return "exited with status %d" % self.code


@dataclass(frozen=True)
class Outcome:
    """What the pool made of a worker's exit."""

    worker: int
    what: str  # "stopped", "restart" or "give up"
    status: ExitStatus
    delay_s: float = 0.0  # "restart": in this many seconds
    when: str = ""  # for the log: "while serving", "before it listened (2 of 5 ...)"


class Worker:
    """One worker slot: its state, its current process, its backoff."""

    def __init__(self, number: int, backoff: Backoff):
        self.number = number
        self.state = WAITING
        self.pid: int | None = None
        self.backoff = backoff
        self.due_at = 0.0  # when a WAITING worker starts (monotonic)
        self.ready_at: float | None = None
        self.start_failures = 0  # exits before listening, in a row
        self.starts = 0

    def move(self, event: str) -> None:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise PoolError("worker %d: %s while %s" % (self.number, event, self.state))
        self.state = new


class WorkerPool:
    """Which worker to start when, and what each exit means (sans I/O:
    times and statuses come in as arguments)."""

    def __init__(self, n: int, backoff: Callable[[], Backoff] | None = None,
                 max_start_failures: int = MAX_START_FAILURES, stable_s: float = STABLE_S):
        if n < 1:
            raise PoolError("a pool needs at least one worker")
        make = backoff or (lambda: Backoff(RESTART_BASE_S, RESTART_CAP_S))
        self.workers = [Worker(k, make()) for k in range(1, n + 1)]
        self.max_start_failures = max_start_failures
        self.stable_s = stable_s
        self.ever_ready = False  # every worker listened at least once
        self.stopping = False
        self.gave_up: Outcome | None = None

    def worker(self, number: int) -> Worker:
        return self.workers[number - 1]

    def by_pid(self, pid: int) -> Worker | None:
        for w in self.workers:
            if w.pid == pid:
                return w
        return None

    def due(self, now: float) -> list[int]:
        """The workers to start now."""
        if self.stopping:
            return []
        return [w.number for w in self.workers if w.state == WAITING and w.due_at <= now]

    def next_due(self) -> float | None:
        """When the next waiting worker starts (None: none waits)."""
        ts = [w.due_at for w in self.workers if w.state == WAITING]
        return None if self.stopping or not ts else min(ts)

    def spawned(self, number: int, pid: int, now: float) -> None:
        w = self.worker(number)
        w.move("spawned")
        w.pid = pid
        w.starts += 1

    def ready(self, number: int, now: float) -> bool:
        """Worker ``number`` listens.  True when this makes every worker
        listen for the first time (the pool is up: write the ready file)."""
        w = self.worker(number)
        w.move("ready")
        w.ready_at = now
        w.start_failures = 0
        if self.ever_ready or self.stopping:
            return False
        self.ever_ready = all(x.state == READY for x in self.workers)
        return self.ever_ready

    def exited(self, pid: int, status: ExitStatus, now: float) -> Outcome | None:
        """A child ended; None if it was none of ours."""
        w = self.by_pid(pid)
        if w is None:
            return None
        was = w.state
        w.move("exited")
        w.pid = None
        n = w.number
        if was == STOPPING:
            return Outcome(n, "stopped", status, when="asked to stop")
        if was == STARTING:
            w.start_failures += 1
            if not self.ever_ready or w.start_failures >= self.max_start_failures:
                out = Outcome(n, "give up", status, when=(
                    "before it listened, on the first start" if not self.ever_ready else
                    "before it listened, %d starts in a row" % w.start_failures))
                self.gave_up = out
                self.stop()
                return out
            when = "before it listened (%d of %d failed starts)" % (
                w.start_failures, self.max_start_failures)
        else:  # READY: a crash
            if w.ready_at is not None and now - w.ready_at >= self.stable_s:
                w.backoff.reset()
            when = "while serving"
        delay = w.backoff.next_delay()
        w.due_at = now + delay
        return Outcome(n, "restart", status, delay, when)

    def stop(self) -> list[int]:
        """Stop the pool: the pids to send SIGTERM (no worker starts again)."""
        self.stopping = True
        pids = []
        for w in self.workers:
            w.move("stop")
            if w.state == STOPPING and w.pid is not None:
                pids.append(w.pid)
        return pids

    @property
    def done(self) -> bool:
        return all(w.state == DONE for w in self.workers)

    def live_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None]


# -- what each worker is given ---------------------------------------------------------


def refusal(cfg: Config, n: int, shared: bool) -> str | None:
    """Why ``serve --workers n`` cannot run with ``cfg`` (None: it can)."""
    if n < 1:
        return "--workers must be at least 1"
    if n == 1:
        return None
    if not shared:
        return ("--workers %d needs a PostgreSQL store: an SQLite store has one writer, so "
                "it runs one receiver process (give --db postgresql://...; "
                "docs/scale-out.md)" % n)
    if cfg.serial:
        return ("--workers %d: a serial line is read by one process; run the serial "
                "receiver without --workers (another receiver on the same store)" % n)
    return None


def metrics_addresses(cfg: Config, n: int) -> list:
    """Worker k's metrics address: PORT+k-1 (port 0: each its own)."""
    if cfg.metrics is None:
        return [None] * n
    host, port = cfg.metrics
    if port == 0:
        return [(host, 0)] * n
    if port + n - 1 > 65535:
        raise UsageError("--metrics %s:%d with --workers %d: the workers need ports %d..%d, "
                         "past 65535" % (host, port, n, port, port + n - 1))
    out = [(host, port + k) for k in range(n)]
    taken = {p for _, p in list(cfg.tcp) + list(cfg.dc09_tcp)
             + ([cfg.web] if cfg.web else []) if p}
    clash = sorted(p for _, p in out if p in taken)
    if clash:
        raise UsageError("--metrics %s:%d with --workers %d takes ports %d..%d (one per "
                         "worker), and port %d is a listener's: choose another metrics port"
                         % (host, port, n, port, port + n - 1, clash[0]))
    return out


def _reserve(kind: int, host: str, port: int) -> socket.socket:
    """A ``SO_REUSEPORT`` socket bound to (host, port): port 0 gets one."""
    family, _, _, _, addr = socket.getaddrinfo(host or None, port, type=kind,
                                               flags=socket.AI_PASSIVE)[0]
    s = socket.socket(family, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(addr)
    except BaseException:
        s.close()
        raise
    return s


def reserve_ports(cfg: Config) -> tuple[Config, list[socket.socket]]:
    """``cfg`` with every listening port concrete, and the TCP sockets that
    hold those ports for as long as the parent runs (bound, never
    listening: the kernel hands connections only to the workers).  A UDP
    port is probed and let go (a bound UDP socket would take datagrams).
    Raises OSError for a port another program holds."""
    held: list[socket.socket] = []
    try:
        def tcp(addr):
            s = _reserve(socket.SOCK_STREAM, *addr)
            held.append(s)
            return (addr[0], s.getsockname()[1])

        def udp(addr):
            s = _reserve(socket.SOCK_DGRAM, *addr)
            try:
                return (addr[0], s.getsockname()[1])
            finally:
                s.close()

        new = dataclasses.replace(
            cfg, tcp=[tcp(a) for a in cfg.tcp], dc09_tcp=[tcp(a) for a in cfg.dc09_tcp],
            udp=[udp(a) for a in cfg.udp], dc09_udp=[udp(a) for a in cfg.dc09_udp],
            web=tcp(cfg.web) if cfg.web else None)
    except BaseException:
        for s in held:
            s.close()
        raise
    return new, held


def instance_base(cfg: Config) -> str:
    """The workers' names are this plus ``-w<k>``: the configured cluster
    instance, else host:pid of the parent.  A restarted worker keeps its
    name, so it resumes its predecessor's leases at once."""
    return cfg.cluster_instance or "%s:%d" % (socket.gethostname(), os.getpid())


def worker_config(cfg: Config, number: int, base: str, metrics) -> Config:
    """Worker ``number``'s configuration: the parent's with its cluster
    name, its metrics address and every listener shared."""
    return dataclasses.replace(cfg, cluster_instance="%s-w%d" % (base, number),
                               metrics=metrics, reuse_port=True)


def ready_document(first: dict, workers: list[dict], loop_name: str) -> dict:
    """The parent's ready file: worker 1's addresses (the same for all but
    metrics), the parent's pid, and each worker."""
    doc = dict(first)
    doc.update(pid=os.getpid(), event_loop=loop_name, workers=workers)
    return doc


def write_json_atomic(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


# -- the process part ------------------------------------------------------------------

# run_child(cfg, number, ready_path) -> exit status: a whole receiver in the
# forked child (receiver.cli gives it: serve's own start, errors in words)
ChildRunner = Callable[[Config, int, str], int]


def serve(cfg: Config, n: int, ready_file: str | None, loop_name: str,
          run_child: ChildRunner) -> int:
    """Run ``n`` workers until SIGTERM/SIGINT; the exit status."""
    metrics = metrics_addresses(cfg, n)
    try:
        cfg, held = reserve_ports(cfg)
    except OSError as e:
        print("guardline-receiver: cannot listen: %s" % e, file=sys.stderr)
        return 2
    base = instance_base(cfg)
    configs = [worker_config(cfg, k + 1, base, m) for k, m in enumerate(metrics)]
    tmp = tempfile.mkdtemp(prefix="guardline-workers.")
    wake_r, wake_w = socket.socketpair()
    for s in (wake_r, wake_w):
        s.setblocking(False)
    stop_signal: list[int] = []

    def on_stop(sig, _frame):
        stop_signal.append(sig)

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
    old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # only to wake the select
    parent = os.getpid()
    inherited = [wake_r, wake_w, *held]

    def child(number: int, ready: str) -> int:
        # (the stop signals are blocked across the fork: one sent to this
        # worker now waits for its own handlers rather than the parent's)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        for s in inherited:
            s.close()
        _die_with_parent(parent)
        code = run_child(configs[number - 1], number, ready)
        # stopped: a second SIGTERM (systemd signals every process of the
        # unit, and the parent passes its own on) must not turn a clean
        # exit into a death by signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return code

    pool = WorkerPool(n)
    try:
        return _supervise(pool, configs, tmp, ready_file, loop_name, child, wake_r,
                          stop_signal)
    finally:
        for w in pool.workers:  # only if the loop itself failed
            if w.pid is not None:
                _kill(w.pid, signal.SIGKILL)
                os.waitpid(w.pid, 0)
        signal.set_wakeup_fd(old_wakeup)
        for s, h in old.items():
            signal.signal(s, h)
        for s in inherited:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _supervise(pool: WorkerPool, configs: list[Config], tmp: str, ready_file, loop_name,
               child, wake_r: socket.socket, stop_signal: list) -> int:
    ready_docs: dict[int, dict] = {}
    stop_deadline = None
    unclean = False
    _LOGGER.info("workers starting workers=%d", len(pool.workers))
    while not pool.done:
        now = time.monotonic()
        if stop_signal and not pool.stopping:
            _LOGGER.info("signal received: stopping every worker signal=%s",
                         signal.Signals(stop_signal[0]).name)
            for pid in pool.stop():
                _kill(pid, signal.SIGTERM)
        if pool.stopping and stop_deadline is None:
            stop_deadline = now + STOP_KILL_S
        if stop_deadline is not None and now > stop_deadline:
            for pid in pool.live_pids():
                _LOGGER.error("worker did not stop within %.0f s: killed pid=%d",
                              STOP_KILL_S, pid)
                _kill(pid, signal.SIGKILL)
            stop_deadline = now + STOP_KILL_S
        for number in pool.due(now):
            unclean |= _start(pool, number, configs, tmp, child, now)
        while True:  # reap
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            out = pool.exited(pid, ExitStatus.from_wait(status), time.monotonic())
            if out is not None:
                unclean |= _tell(pool, out, pid)
        for w in pool.workers:
            if w.state != STARTING:
                continue
            path = os.path.join(tmp, "w%d.json" % w.number)
            doc = _read_ready(path)
            if doc is None:
                continue
            os.unlink(path)
            ready_docs[w.number] = dict(doc, instance=configs[w.number - 1].cluster_instance)
            again = pool.ever_ready
            if pool.ready(w.number, time.monotonic()):
                if not _announce(pool, ready_docs, ready_file, loop_name):
                    for pid in pool.stop():
                        _kill(pid, signal.SIGTERM)
                    unclean = True
            elif again:
                _LOGGER.info("worker listening again worker=%d pid=%d", w.number,
                             doc.get("pid", 0))
        _wait(wake_r, pool, time.monotonic())
    if pool.gave_up is not None:
        code = pool.gave_up.status.code
        return code if code in (1, 2) else 1
    return 1 if unclean else 0


def _start(pool: WorkerPool, number: int, configs: list[Config], tmp: str, child,
           now: float) -> bool:
    """Fork worker ``number``; a fork that fails (no memory, the process
    limit) counts as a start that failed.  True: as :func:`_tell`."""
    ready = os.path.join(tmp, "w%d.json" % number)
    if os.path.exists(ready):
        os.unlink(ready)
    try:
        pid = _fork(lambda: child(number, ready))
    except OSError as e:
        _LOGGER.error("cannot start a worker process worker=%d error=%s", number,
                      q(e.strerror or str(e)))
        pool.spawned(number, -1, now)
        out = pool.exited(-1, ExitStatus(code=1), now)
        return out is not None and _tell(pool, out, -1)
    pool.spawned(number, pid, now)
    _LOGGER.info("worker started worker=%d pid=%d instance=%s", number, pid,
                 configs[number - 1].cluster_instance)
    return False


def _tell(pool: WorkerPool, out: Outcome, pid: int) -> bool:
    """Log what the pool made of an exit and act on it; True if the exit
    makes the receiver's stop unclean."""
    words = q(out.status.words())
    if out.what == "stopped":
        (_LOGGER.info if out.status.clean else _LOGGER.warning)(
            "worker stopped worker=%d pid=%d status=%s", out.worker, pid, words)
        return not out.status.clean
    if out.what == "restart":
        _LOGGER.warning("worker ended unasked, starting it again worker=%d pid=%d status=%s "
                        "when=%s in_s=%.1f", out.worker, pid, words, q(out.when), out.delay_s)
        return False
    _LOGGER.error("worker could not start, stopping every worker worker=%d pid=%d status=%s "
                  "when=%s", out.worker, pid, words, q(out.when))
    for other in pool.live_pids():
        _kill(other, signal.SIGTERM)
    return False


def _announce(pool: WorkerPool, docs: dict, ready_file, loop_name) -> bool:
    """Every worker listens: log it and write the ready file (False: it
    could not be written, and the pool stops, as a lone receiver does)."""
    workers = [{"worker": k, "pid": docs[k]["pid"], "instance": docs[k]["instance"],
                "metrics": docs[k].get("metrics")} for k in sorted(docs)]
    _LOGGER.info("workers listening workers=%d pids=%s", len(workers),
                 ",".join(str(w["pid"]) for w in workers))
    if not ready_file:
        return True
    first = {k: v for k, v in docs[1].items() if k not in ("pid", "instance", "event_loop")}
    try:
        write_json_atomic(ready_file, ready_document(first, workers, loop_name))
    except OSError as e:
        print("guardline-receiver: cannot write --ready-file %s: %s" % (
            ready_file, e.strerror or e), file=sys.stderr)
        return False
    return True


def _wait(wake_r: socket.socket, pool: WorkerPool, now: float) -> None:
    """Sleep until a signal (a child's exit, a stop) or the next thing due."""
    timeout = 1.0
    if any(w.state == STARTING for w in pool.workers):
        timeout = READY_POLL_S
    due = pool.next_due()
    if due is not None:
        timeout = max(0.0, min(timeout, due - now))
    r, _, _ = select.select([wake_r], [], [], timeout)
    if r:
        try:
            while wake_r.recv(256):
                pass
        except BlockingIOError:
            pass


def _read_ready(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None  # not there yet (a worker writes it whole, by rename)


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def _fork(body: Callable[[], int]) -> int:
    """Fork; the child runs ``body`` (which unblocks the stop signals once
    its own handlers are in place) and exits with its status."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        return pid
    code = 1
    try:
        code = body()
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - a worker says why in one line
        print("guardline-receiver: worker failed: %s: %s" % (type(e).__name__, e),
              file=sys.stderr)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)  # never back into the parent's code
    return 0  # not reached


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker if the parent dies (Linux; elsewhere nothing)."""
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
