"""Test harness for the panel firmware: a tiny receiver and a driver for a
simulated panel running under the real MicroPython VM.

:class:`TinyReceiver` is deliberately small (the real receiver lives in
``receiver/``): a TCP and a UDP socket on loopback, glwire to decode, and
an ACK sealed with ``FLAG_FROM_RECEIVER`` for every authentic frame.  It
records what arrived, de-duplicated by sequence as a receiver must.

:class:`TinyDc09Receiver` is the same for a panel reporting SIA DC-09
(``"protocol": "dc09"``).

:class:`SimPanel` starts ``python -m firmware.sim`` (which restarts the VM
on a power cycle) and talks to the sim board's control socket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

from protocol.lean import glwire as w

TEST_KEY = bytes(range(32))
TEST_SALT = "5a17c0de5a17c0de5a17c0de5a17c0de"


def free_port(kind=socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def code_hash(code: str, salt: str = TEST_SALT) -> str:
    import hashlib
    return hashlib.sha256(bytes.fromhex(salt) + code.encode()).hexdigest()


class TinyReceiver:
    """ACKs every authentic frame from `account` on TCP and UDP (same port
    number).  `frames` lists (path, seq, msg) in arrival order; `events`
    maps seq -> msg for EVENT frames (a retransmission overwrites)."""

    def __init__(self, account: int, key: bytes = TEST_KEY, port: int | None = None):
        self.account = account
        self.keys = w.Keys(key)
        self.lock = threading.Lock()
        self.frames: list = []
        self.events: dict = {}
        self.ack = True  # set False to stay silent (the panel then retries)
        self.tx_seq = 0
        self._stop = False
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(20):
            self.port = port or free_port()
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.udp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if port:
                    raise
                self.tcp.close()
                self.tcp = socket.socket()
                self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.listen(4)
        self.tcp.settimeout(0.2)
        self.udp.settimeout(0.2)
        self._threads = [threading.Thread(target=self._accept, daemon=True),
                         threading.Thread(target=self._udp_loop, daemon=True)]
        for t in self._threads:
            t.start()

    def close(self):
        self._stop = True
        for t in self._threads:
            t.join(2)
        self.tcp.close()
        self.udp.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- decoding -----------------------------------------------------------

    def _reply(self, frame, path) -> bytes | None:
        if frame.account != self.account or frame.flags & w.FLAG_FROM_RECEIVER:
            return None
        try:
            msg = w.open_frame(self.keys, frame)
        except w.WireError:
            return None
        with self.lock:
            self.frames.append((path, frame.seq, msg, frame.flags))
            if msg["type"] == w.MSG_EVENT:
                self.events[frame.seq] = msg
            if not self.ack:
                return None
            self.tx_seq += 1
            return w.seal(self.keys, {"type": w.MSG_ACK, "ack_seq": frame.seq},
                          self.account, self.tx_seq, int(time.time()), w.FLAG_FROM_RECEIVER)

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.tcp.accept()
            except OSError:
                continue
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        c.settimeout(0.2)
        r = w.FrameReader()
        with c:
            while not self._stop:
                try:
                    d = c.recv(1024)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not d:
                    return
                r.receive_data(d)
                while True:
                    f = r.next_frame()
                    if f is w.NEED_DATA:
                        break
                    if isinstance(f, w.BadFrame):
                        continue
                    out = self._reply(f, 1)
                    if out:
                        try:
                            c.sendall(out)
                        except OSError:
                            return

    def _udp_loop(self):
        while not self._stop:
            try:
                d, addr = self.udp.recvfrom(2048)
            except OSError:
                continue
            try:
                f = w.decode_datagram(d)
            except w.WireError:
                continue
            out = self._reply(f, 2)
            if out:
                self.udp.sendto(out, addr)

    # -- queries ------------------------------------------------------------

    def event_list(self) -> list:
        """EVENT messages, de-duplicated, in sequence order."""
        with self.lock:
            return [self.events[s] for s in sorted(self.events)]

    def find(self, code: int, qualifier: int = w.Q_NEW, **fields) -> list:
        out = []
        for m in self.event_list():
            if m["code"] == code and m["qualifier"] == qualifier and \
                    all(m[k] == v for k, v in fields.items()):
                out.append(m)
        return out

    def of_type(self, mtype: int) -> list:
        with self.lock:
            return [f for f in self.frames if f[2]["type"] == mtype]


class TinyDc09Receiver(TinyReceiver):
    """A standard SIA DC-09 receiver, as small (the real one is
    ``receiver.dc09_listener``): on TCP and UDP (same port number), the
    host codec (``protocol.dc09``) against this machine's clock; ACK (*ACK,
    encrypted, when the message was) for every good message from
    `account`, NAK with our time for one failing the timestamp test, and
    silence for anything else.  `events` maps (DC-09 seq, data) -> the
    Contact ID event ({"code", "qualifier", "partition", "zone"}), so
    ``find`` and ``event_list`` work as on TinyReceiver."""

    def __init__(self, account: str = "12AB", key: bytes | None = None,
                 port: int | None = None):
        self.dc09_account = account
        self.dc09_key = key
        super().__init__(0, TEST_KEY, port)

    def _answer(self, frame: bytes, path: int) -> bytes | None:
        from datetime import datetime, timezone

        from protocol import dc09
        now = datetime.now(timezone.utc)
        try:
            m = dc09.parse(frame, now=now, key_lookup=lambda a: (
                self.dc09_key if a == self.dc09_account else None))
        except dc09.Dc09TimestampError:
            return dc09.build_nak(now)
        except dc09.Dc09Error:
            return None
        if m.account != self.dc09_account:
            return None
        with self.lock:
            self.frames.append((path, m.seq, m, 0))
            if m.msg_id == "ADM-CID":
                self.events[(m.seq, m.data)] = dc09.adm_cid_to_event(m)
            if not self.ack:
                return None
        return dc09.build_ack(m, self.dc09_key, now=now)

    def _conn(self, c):
        from protocol import dc09
        c.settimeout(0.2)
        r = dc09.Dc09Reader()
        with c:
            while not self._stop:
                try:
                    d = c.recv(1024)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not d:
                    return
                r.receive_data(d)
                while True:
                    try:
                        f = r.next_frame()
                    except dc09.Dc09Error:
                        continue
                    if f is dc09.NEED_DATA:
                        break
                    out = self._answer(f, 1)
                    if out:
                        try:
                            c.sendall(out)
                        except OSError:
                            return

    def _udp_loop(self):
        while not self._stop:
            try:
                d, addr = self.udp.recvfrom(2048)
            except OSError:
                continue
            out = self._answer(d, 2)
            if out:
                self.udp.sendto(out, addr)


def scenario_config(rx_port: int, **over) -> dict:
    """A small bank panel for scenario tests: two partitions, short
    timers, one of each interesting zone type."""
    cfg = {
        "name": "test panel", "kind": "bank", "account": 4242, "key": TEST_KEY.hex(),
        "code_salt": TEST_SALT,
        "receiver": {"primary": {"type": "tcp", "host": "127.0.0.1", "port": rx_port},
                     "backup": {"type": "udp", "host": "127.0.0.1", "port": rx_port}},
        "timings": {"exit_delay_s": 0, "entry_delay_s": 1, "siren_cutoff_s": 60,
                    "debounce_ms": 50, "scan_ms": 20, "heartbeat_s": 20,
                    "backup_heartbeat_s": 20, "ack_timeout_ms": 400, "max_backoff_ms": 2000,
                    "fail_after": 2, "ac_loss_delay_s": 0, "battery_delay_s": 0,
                    "clock_grace_s": 3600},
        "partitions": [{"id": 1, "name": "lobby"}, {"id": 2, "name": "teller line"}],
        "zones": [
            {"id": 1, "name": "front door", "type": "entry_exit", "partition": 1},
            {"id": 2, "name": "lobby glass", "type": "instant", "partition": 1},
            {"id": 3, "name": "lobby PIR", "type": "follower", "partition": 1},
            {"id": 4, "name": "teller hold-up", "type": "holdup", "partition": 2},
            {"id": 5, "name": "teller panic", "type": "panic", "partition": 2},
            {"id": 6, "name": "lobby smoke", "type": "fire", "partition": 1},
        ],
        "users": [
            {"id": 1, "name": "manager", "code_hash": code_hash("1234"), "authority": "master"},
            {"id": 2, "name": "teller", "code_hash": code_hash("2580"), "authority": "user"},
            {"id": 9, "name": "duress", "code_hash": code_hash("1235"), "authority": "user",
             "duress": True},
        ],
    }
    for k, v in over.items():
        if k == "timings":
            cfg["timings"].update(v)
        else:
            cfg[k] = v
    return cfg


class SimPanel:
    """A simulated panel under the MicroPython VM (via firmware.sim)."""

    def __init__(self, config: dict | str, state_dir: str, heapsize: str | None = None,
                 bundle: str | None = None, log_path: str | None = None):
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        if isinstance(config, dict):
            path = os.path.join(state_dir, "config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            config = path
        self.control = "127.0.0.1:%d" % free_port()
        argv = [sys.executable, "-m", "firmware.sim", config, "--state-dir", state_dir,
                "--control", self.control]
        if heapsize:
            argv += ["--heapsize", heapsize]
        if bundle:
            argv += ["--bundle", bundle]
        self.log_path = log_path or os.path.join(state_dir, "console.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def ctl(self, req: dict, timeout: float = 20.0) -> dict:
        """Send one command; retries while the VM is (re)starting."""
        host, port = self.control.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=5) as s:
                    s.sendall(json.dumps(req).encode() + b"\n")
                    line = s.makefile("rb").readline()
                    if line:
                        return json.loads(line)
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("panel exited (%s): %s" % (self.proc.returncode,
                                                             self.console()[-2000:]))
            if time.monotonic() > deadline:
                raise TimeoutError("control socket %s not answering" % self.control)
            time.sleep(0.05)

    def wait(self, predicate, timeout: float = 20.0, what: str = "condition"):
        """Poll `predicate` until it returns a true value (returned)."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if self.proc.poll() is not None:
                raise RuntimeError("panel exited: " + self.console()[-2000:])
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s; console:\n%s"
                                     % (what, self.console()[-3000:]))
            time.sleep(0.05)

    def console(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def state(self) -> dict:
        return self.ctl({"cmd": "state"})

    def close(self):
        if self.proc.poll() is None:
            try:
                self.ctl({"cmd": "stop"}, timeout=2)
            except (OSError, RuntimeError, TimeoutError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
