"""What an operator reads, through the console's API against a real receiver
(real sockets, a real SQLite store, a simulated panel over the native
protocol): a path or user number is never a zone name; a boot report is
not an alarm; the audit trail and delivery failures are sentences; a failing
output is a console-wide warning; a panel never heard says so."""

import asyncio
import csv
import io
import secrets

from receiver.store import Account
from receiver.web.testing import Client, console_receiver, sse_events
from testkit.dispatch import JsonLinesSink
from testkit.wait import wait_until
from tests.test_web_api import open_alarm, trip


async def test_path_and_user_numbers_are_never_zone_names(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        assert (await c.login("olga")).status == 200
        # the bank's zone 2 is "lobby PIR", zone 3 "vault door"
        await trip(rx, 1001, 1, 354, 2, partition=0)  # panel: backup path failing
        await trip(rx, 1001, 2, 607, 3, partition=0)  # walk test started by user 3
        await trip(rx, 1001, 3, 130, 3, partition=2)  # a real zone
        # 1004 (1 s heartbeat, never reports): the receiver fails path 1;
        # its zone 1 is named "front door"
        await wait_until(lambda: rx.supervisor.failed(), what="1004 path failure")
        a = await open_alarm(rx, "1004", 350)
        q = {(x["account"], x["code"]): x for x in (await c.json("GET", "/api/alarms"))["alarms"]}
        sup = q[("1004", 350)]
        assert (sup["number_kind"], sup["number_label"], sup["zone_name"]) == (
            "path", "primary path (1)", "")
        assert sup["description"].startswith("Communication trouble: primary path (1) silent for ")
        assert sup["id"] == a.id
        ftc = q[("1001", 354)]
        assert (ftc["number_kind"], ftc["number_label"], ftc["zone_name"]) == (
            "path", "backup path (2)", "")
        assert ftc["description"] == "Failure to communicate event, backup path (2)"
        burg = q[("1001", 130)]
        assert (burg["number_kind"], burg["number_label"], burg["zone_name"]) == (
            "zone", "zone 3 (vault door)", "vault door")
        ev = {e["code"]: e for e in (await c.json("GET", "/api/events?account=1001"))["events"]}
        assert (ev[607]["number_kind"], ev[607]["number_label"], ev[607]["zone_name"]) == (
            "user", "user 3", "")
        assert ev[607]["description"] == "Walk test mode, user 3"
        # the site's zones are not touched by the path or the user number
        s = await c.json("GET", "/api/sites/1001")
        zones = {z["zone"]: z["state"] for z in s["zones"]}
        assert zones[2] == "unknown" and zones[3] == "alarm:burglary"
        async with c.request("GET", "/api/events.csv?account=1001") as r:
            rows = {int(x["code"]): x for x in csv.DictReader(io.StringIO(await r.text()))}
        assert (rows[354]["number_kind"], rows[354]["zone_name"]) == ("path", "")
        assert (rows[607]["number_kind"], rows[607]["zone_name"]) == ("user", "")
        assert (rows[130]["number_kind"], rows[130]["zone_name"]) == ("zone", "vault door")


async def test_a_boot_report_is_history_not_an_alarm(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, sink), Client(base) as c:
        assert (await c.login("olga")).status == 200
        await trip(rx, 1001, 1, 305, 0, partition=0)  # the panel started
        await trip(rx, 1001, 2, 301, 0, partition=0)  # AC loss: still an alarm
        await open_alarm(rx, "1001", 301)
        alarms = (await c.json("GET", "/api/alarms"))["alarms"]
        assert [a["code"] for a in alarms if a["account"] == "1001"] == [301]
        ev = (await c.json("GET", "/api/events?account=1001"))["events"]
        assert [(e["code"], e["description"]) for e in ev] == [
            (301, "AC loss"), (305, "System reset")]
        s = await c.json("GET", "/api/sites/1001")
        assert [t["code"] for t in s["troubles"]] == [301]  # a reset is no standing trouble
        assert await rx.store.outbox_pending("police-feed", 10) == []


async def test_audit_trail_and_delivery_failures_are_sentences(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, sink), Client(base) as c:
        assert (await c.login("olga")).status == 200
        await trip(rx, 1001, 1, 130, 3, partition=2)  # central burglary: routed
        a = await open_alarm(rx, "1001", 130)
        await wait_until(lambda: len(sink.received) >= 2, what="both deliveries")
        await c.json("POST", "/api/alarms/%d/acknowledge" % a.id)
        await c.json("POST", "/api/alarms/%d/steps/1" % a.id, json={"action": "complete"})
        await c.json("POST", "/api/alarms/%d/resolve" % a.id,
                     json={"disposition": "false", "note": "false alarm"})
        d = await c.json("GET", "/api/alarms/%d" % a.id)
        assert [(r["text"], r["note"]) for r in d["audit"]] == [
            ("Raised by the receiver and routed to Central Police Station (police station), "
             "District 1 Command (district command) and Municipal Emergency Centre "
             "(municipal centre).", None),
            ("Plan 'builtin' (%s), the center-wide fallback plan."
             % a.plan_hash[:12], None),
            ("Taken by olga.", None), ("Acknowledged by olga.", None),
            ("Step 1 (Read the alarm and the site's notes; handle it as the centre's "
             "procedures say.) completed by olga.", None),
            ("Resolved by olga as 'False alarm'.", "false alarm")]
        assert (await c.json("GET", "/api/warnings"))["warnings"] == []

        # the far end goes away while an alarm is routed to it
        async with c.request("GET", "/api/stream") as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "hello"
            port = sink.port
            sink.ack = False  # drops the kept connection at the next message
            await sink.stop()  # and listens no more
            await trip(rx, 1003, 1, 122, 1)  # ATM hold-up, central: police-feed
            while True:
                kind, msg = await asyncio.wait_for(anext(events), 30)
                if kind == "output":
                    break
            assert msg == {"type": "output", "output": "police-feed", "failing": True}

        async def refused():
            w = (await c.json("GET", "/api/warnings"))["warnings"]
            return w if w and "refused" in w[0]["last_error"] else None
        [w] = await wait_until(refused, 30, what="connection refused reported")
        target = "127.0.0.1:%d" % port
        assert w["name"] == "police-feed" and w["open_alarms"] == 1 and w["failures"] >= 1
        assert w["last_error"] == target + " refused the connection (nothing is listening there)"
        assert w["text"].startswith("Output police-feed: %s refused the connection" % target)
        d = await c.json("GET", "/api/dispatch")
        [out] = d["outputs"]
        assert out["failing"] and out["last_error"].startswith(target)
        [b] = [x for x in d["alarms"] if x["account"] == "1003"]
        # the head row was tried; the one behind it waits its turn
        errs = {r["last_error"] for r in b["dispatch"] if r["output"]} - {None}
        assert errs and all(e.startswith(target) and "Errno" not in e and "('127" not in e
                            for e in errs), errs
        # back: delivered, no warning
        sink2 = JsonLinesSink(port=port)
        await sink2.start()
        try:
            await wait_until(lambda: len(sink2.received) >= 2, 30, what="redelivered")

            async def clear():
                return (await c.json("GET", "/api/warnings"))["warnings"] == []
            await wait_until(clear, what="warning cleared")
        finally:
            await sink2.stop()


async def test_a_panel_never_heard_says_so(tmp_path):
    accounts = {
        1: Account("1", secrets.token_bytes(32), site_name="New site"),  # never connected
        2: Account("2", secrets.token_bytes(32), site_name="Old site",
                   highest_seq=41),  # reported before this receiver started
    }
    async with console_receiver(tmp_path, accounts=accounts) as (rx, base, _), \
            Client(base) as c:
        assert (await c.login("olga")).status == 200

        async def rows():
            return {p["number"]: p for p in (await c.json("GET", "/api/panels"))["panels"]}
        p = await rows()
        assert (p["1"]["heard"], p["1"]["last_heard"]) == ("never", None)
        assert [(s["path_label"], s["state"], s["heard"], s["last_heard"])
                for s in p["1"]["supervision"]] == [("primary path (1)", "ok", "never", None)]
        assert (p["2"]["heard"], p["2"]["last_heard"]) == ("not since start", None)
        assert (p["1"]["trouble"], p["1"]["open_conditions"]) == (False, 0)
        s = await c.json("GET", "/api/sites/1")
        assert [(x["heard"], x["last_heard"]) for x in s["supervision"]] == [("never", None)]
        await trip(rx, 1, 1, 130, 1)
        p = await rows()
        assert p["1"]["heard"] == "yes" and p["1"]["last_heard"] is not None
        assert p["1"]["supervision"][0]["heard"] == "yes"
