"""The README's main command: `make demo` runs receiver.demo.  Run it for
real (receiver, SQLite store, two panels under the MicroPython VM, a
protocol-level cash van and two patrol cars) for the length of its script
and check that the scripted alarms arrived, were queued at the right
priority and were forwarded to dispatch, and that a patrol reached the
van's hold-up."""

import sqlite3
import subprocess
import sys

import pytest


@pytest.mark.micropython
@pytest.mark.slow
def test_demo_script_delivers_its_alarms(tmp_path):
    work = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "receiver.demo", "--dir", str(work),
                        "--duration", "60", "--web", ""],
                       capture_output=True, text=True, timeout=240)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "Silent hold-up, zone 18 (teller 2 hold-up), teller line" in out
    assert "Forced access, zone 1 (entrance door), flat" in out
    assert "Duress, user 4, vault" in out
    # the vault door, held in its abort window, then sent at the duress
    # disarm, confirmed by the seismic detector (a second detector)
    assert "Confirmed alarm (intrusion verifier), zone 1 (vault door), vault" in out
    db = sqlite3.connect(work / "receiver.db")
    rows = db.execute("SELECT account, code FROM events").fetchall()
    assert ("1001", 122) in rows and ("1001", 121) in rows and ("1002", 423) in rows
    assert ("1001", 139) in rows and ("1001", 134) in rows
    # the flat: the owner tripped her door (an exit error), her siren
    # sounded, she disarmed inside the abort window: the receiver got her
    # opening and no alarm for it
    assert "disarms inside the abort window" in out
    flat = db.execute("SELECT code, qualifier, zone FROM events WHERE account = '1002' "
                      "ORDER BY seq").fetchall()
    assert (401, 1, 1) in flat
    assert not [r for r in flat if r[0] in (134, 374, 457, 406)], flat
    assert [r[0] for r in flat if r[1] == 1 and r[0] in (423, 459)] == [423, 459]
    # the cash van (issue 19): the receiver's own check caught it off its
    # corridor, its crew's hold-up carries where it was, the nearest patrol
    # was dispatched and recorded on scene, with the time in the audit
    van = db.execute("SELECT code, qualifier, source, position FROM events WHERE account = "
                     "'1003' ORDER BY id").fetchall()
    assert (170, 1, "vehicle") in [r[:3] for r in van], van
    [holdup] = [r for r in van if r[0] == 122]
    assert '"lat": 52.3705' in holdup[3] and '"alarm": true' in holdup[3]
    assert db.execute("SELECT COUNT(*) FROM track_points WHERE account = '1003'").fetchone()[
        0] >= 5
    [(patrol, arrived)] = db.execute("SELECT patrol, arrived_at FROM dispatches").fetchall()
    assert patrol == "1004" and arrived is not None  # the nearer of the two patrols
    # (the rows of the alarm's state and dispatches: not the workflow's plan row)
    audit = [r[0] for r in db.execute("SELECT a.note FROM alarm_audit a JOIN alarms l ON "
                                      "l.id = a.alarm_id WHERE l.account = '1003' AND "
                                      "l.code = 122 AND a.action IS NULL ORDER BY a.id")]
    assert audit[1].startswith("Patrol 1004 (Patrol car 3) dispatched by demo-operator")
    assert "on scene" in audit[2] and "after dispatch" in audit[2]
    assert "PATROL account 1004 on scene" in out
    # the bank's schedule: today's hours changed so that it "closes now"; the
    # vault, disarmed under duress, is not armed by the deadline: the
    # receiver's own fail to close, alarmed and routed like a panel's
    if "the demo skips the fail to close" not in out:  # (near the branch's midnight)
        assert "Failed to close, vault: not armed by " in out
        [(source, q, cls)] = db.execute(
            "SELECT source, qualifier, event_class FROM events WHERE account = '1001' "
            "AND code = 454").fetchall()
        assert (source, q, cls) == ("schedule", 1, "trouble")
        assert db.execute("SELECT routed_to FROM alarms WHERE code = 454").fetchone() == (
            '{"district_command": "dc-1"}',)
        assert db.execute("SELECT COUNT(*) FROM rules_audit WHERE action = 'schedule.change' "
                          "AND actor = 'demo'").fetchone() == (1,)
    # an operator worked the teller's hold-up through the bank's plan to a
    # disposition; nobody acknowledged it within its 15 s first: escalated
    assert "plan 'holdup-bank' (v7, " in out
    assert "passcode check: Anna Berg (branch manager) gave the correct passcode to olga." in out
    assert "hold-up resolved by olga as 'Real: hold-up confirmed'" in out
    assert "! ESCALATION  account 1001" in out and "Not acknowledged within 15 s" in out
    [(aid, disposition)] = db.execute("SELECT id, disposition FROM alarms WHERE code = 122 "
                                      "AND account = '1001'").fetchall()
    assert disposition == "real-holdup"
    states = db.execute("SELECT state FROM alarm_steps WHERE alarm_id = ? ORDER BY position",
                        (aid,)).fetchall()
    assert [s for (s,) in states] == ["completed"] * 7
    # every (account, seq) once: nothing doubled on the way
    dup = db.execute("SELECT account, seq, COUNT(*) FROM events WHERE seq IS NOT NULL "
                     "GROUP BY account, seq HAVING COUNT(*) > 1").fetchall()
    assert dup == []
