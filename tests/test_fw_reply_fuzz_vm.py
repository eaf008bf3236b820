"""No reply stops reporting (issue 14), a batch under the real MicroPython
VM: the plans of test_fw_reply_fuzz.py (hypothesis: arbitrary DC-09 and
native replies) fed to the reporters running in the VM
(tests/vm_reporter_rig.py: the real reporter, queue, sequence store,
clock and panel over fake links), then a sane receiver on the host (the
host DC-09 codec; protocol.session.ReceiverCore).  The VM's poll must
never raise, the queue must drain, and nothing may leave it unACKed."""

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from firmware import DEVICE_DIR, LEAN_DIR
from firmware.device import config as C
from protocol.lean import glwire as w
from testkit import vm as mpvm
from testkit.configs import scenario_config
from tests.test_fw_dc09 import K256, Dc09Rx, dc09_config
from tests.test_fw_reply_fuzz import (ATTACK_9999, ATTACK_JUMP, ATTACK_REPLAY, ATTACK_TIME,
                                      DC09_REPLY, NATIVE_REPLY, PAIRS, SANE_MS, ChaosDc09,
                                      ChaosNative)
from tests.test_fw_reporter import Receiver, frames_of

pytestmark = pytest.mark.micropython

if not mpvm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

RIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vm_reporter_rig.py")
STEP = 100  # ms per poll


class VmRig:
    """The VM side, one process for the whole batch."""

    def __init__(self):
        env = dict(os.environ, MICROPYPATH=os.pathsep.join((DEVICE_DIR, LEAN_DIR, ".frozen")))
        self.proc = subprocess.Popen([mpvm.micropython(), RIG], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, bufsize=1)

    def call(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the VM exited"
        rep = json.loads(line)
        assert "error" not in rep, rep["error"]
        return rep

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def vm():
    v = VmRig()
    yield v
    v.close()


class Host:
    """Answers what the VM sent: `rx.handle(frame, path)` per frame; the
    native receivers take glwire frames (decoded here, per path)."""

    def __init__(self, native):
        self.native = native
        self.reader = w.FrameReader()  # path 1 is a stream

    def answers(self, rx, sent, now_ms):
        rx.now_ms = now_ms
        inbox = []
        for path, h in sent:
            data = bytes.fromhex(h)
            frames = [data]
            if self.native:
                frames = frames_of(self.reader if path == 1 else None, data)
            for f in frames:
                out = rx.handle(f, path)
                if out:
                    inbox.append([path, bytes(out).hex()])
        return inbox


def drive(vm, host, rx, ms, inbox, settle=False):
    """`ms` of VM time against `rx`, one poll per round trip: 100 ms after
    a poll that sent something (the answer comes within the ACK timeout,
    as on a LAN), 1 s after a quiet one.  `settle`: stop early once the
    queue is empty and both paths take events."""
    end = ms
    step = STEP
    while True:
        rep = vm.call(op="run", polls=1, step=step, inbox=inbox)
        inbox = host.answers(rx, rep["sent"], rep["now"])
        step = STEP if rep["sent"] or inbox else 1000
        if rep["now"] >= end or (settle and rep["settled"] and not inbox):
            return rep, inbox


SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(plan=st.lists(DC09_REPLY, min_size=1, max_size=12), n_events=st.integers(1, 3))
@example(plan=ATTACK_9999, n_events=1)
def test_dc09_reporter_in_the_vm_survives_any_reply(vm, tmp_path_factory, plan, n_events):
    cfg = dc09_config(K256)
    assert not C.validate(cfg)[1]
    vm.call(op="init", dir=str(tmp_path_factory.mktemp("vmdc09")), cfg=cfg)
    for z in range(1, n_events + 1):
        vm.call(op="emit", event=[w.Q_NEW, 130, 1, z])
    chaos = ChaosDc09(plan, K256)
    host = Host(False)
    rep, inbox = drive(vm, host, chaos, 30000, [])
    sane = Dc09Rx(K256)
    rep, _ = drive(vm, host, sane, SANE_MS, [], settle=True)
    assert rep["queue"] == 0, rep["codes"]
    got = {e[4] for e in sane.adm() if e[2] == 130}
    got |= {int(d[-3:]) for d in chaos.acked if " 01 " in d and "1130" in d}
    assert set(range(1, n_events + 1)) <= got


@SETTINGS
@given(plan=st.lists(NATIVE_REPLY, min_size=1, max_size=12), n_events=st.integers(1, 3))
@example(plan=ATTACK_REPLAY, n_events=1)
@example(plan=ATTACK_TIME, n_events=1)
@example(plan=ATTACK_JUMP, n_events=1)
def test_native_reporter_in_the_vm_survives_any_reply(vm, tmp_path_factory, plan, n_events):
    cfg = scenario_config(7700, timings={"ack_timeout_ms": 1000, "max_backoff_ms": 4000,
                                         "fail_after": 2})
    vm.call(op="init", dir=str(tmp_path_factory.mktemp("vmnative")), cfg=cfg)
    for z in range(1, n_events + 1):
        vm.call(op="emit", event=[w.Q_NEW, 130, 1, z])
    chaos = ChaosNative(plan)
    rep, inbox = drive(vm, Host(True), chaos, 30000, [])
    sane = Receiver()
    rep, _ = drive(vm, Host(True), sane, SANE_MS, [], settle=True)
    assert rep["queue"] == 0, rep["codes"]
    got = {m["zone"] for m in sane.events.values() if m["code"] == 130}
    got |= {z for c, z in chaos.acked if c == 130}
    assert set(range(1, n_events + 1)) <= got


def test_native_resequence_cut_by_power_loss_keeps_the_order_in_the_vm(vm, tmp_path):
    """test_fw_reply_fuzz.py's resequence cut by a power loss, in the VM:
    a key holder's NAK(replay) to 2**25 with an alarm, its restore and
    another pair queued, the power lost after the first record was
    renumbered; powered on, the panel finishes the renumbering before it
    sends anything, and the genuine receiver (highest 0) gets the four in
    the order they happened."""
    cfg = scenario_config(7700, timings={"ack_timeout_ms": 1000, "max_backoff_ms": 4000,
                                         "fail_after": 2})
    d = str(tmp_path)
    vm.call(op="init", dir=d, cfg=cfg)
    for q, z in PAIRS:
        vm.call(op="emit", event=[q, 130, 1, z])
    vm.call(op="cut", after=1)
    chaos = ChaosNative([("nak", True, 0x2000000, 0, w.NAK_REPLAY, 0)])
    host, inbox = Host(True), []
    while True:
        rep = vm.call(op="run", polls=1, step=STEP, inbox=inbox)
        if rep.get("cut"):
            break
        inbox = host.answers(chaos, rep["sent"], rep["now"])
        assert rep["now"] < 10000, "no resequence"
    vm.call(op="init", dir=d, cfg=cfg)  # power on
    sane = Receiver()
    rep, _ = drive(vm, Host(True), sane, SANE_MS, [], settle=True)
    assert rep["queue"] == 0, rep["codes"]
    got = [(m["qualifier"], m["zone"], m["event_time"]) for _, m in sorted(sane.events.items())
           if m["code"] == 130]
    assert got == [(q, z, 0) for q, z in PAIRS]
