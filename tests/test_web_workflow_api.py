"""The workflow's JSON API (receiver/web/workflow_api.py) against a real
receiver with the console, panels simulated over real TCP: roles and CSRF
on every route, a hold-up worked through its plan with passcodes that go
nowhere but into the check, escalations alerting every console, notes,
contacts and the panel commands' words, the plans editor, and what a
panel says after an alarm (CP-01: a cancel, a recent closing, a confirmed
alarm)."""

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest
from aiohttp import web

from receiver.web import auth, workflow_api
from receiver.web.testing import Client, console_receiver, sse_events
from tests.test_web_api import trip
from testkit.wait import wait_until

EX = Path(__file__).resolve().parent.parent / "examples"
# the bank's site file is the demo's; its account is 1001 here too
SITE = EX / "sites" / "1001-city-bank.toml"


def _fill(path: str) -> str:
    return path.replace("{id}", "1").replace("{number}", "1001").replace("{name}", "Anna Berg") \
        .replace("{position}", "1").replace("{kind}", "plans")


async def alarm_of(rx, code, account="1001"):
    async def find():
        return [a for a in await rx.store.list_alarms() if a.account == account
                and a.code == code]
    [a] = await wait_until(find, what="alarm %s/%d" % (account, code))
    return a


async def setup_workflow(rx, plans_text=None):
    wf = rx.workflow
    await wf.load_file("plans", plans_text or (EX / "plans.toml").read_text(), "test", "ada")
    await wf.load_file("dispositions", (EX / "dispositions.toml").read_text(), "test", "ada")
    await wf.import_site(str(SITE), "sam")


async def test_every_workflow_route_asks_its_role_and_a_write_its_csrf_token(tmp_path):
    routes = workflow_api.add_routes(web.Application())
    assert {p for _, _, p in routes} <= set(auth.PERMISSIONS)
    async with console_receiver(tmp_path) as (rx, base, _), \
            Client(base) as olga, Client(base) as sam, Client(base) as ada:
        for c, name in ((olga, "olga"), (sam, "sam"), (ada, "ada")):
            assert (await c.login(name)).status == 200
        refused = []
        for method, path, perm in routes:
            for c in (olga, sam, ada):
                if auth.allowed(c.me["role"], perm):
                    continue
                async with c.request(method, _fill(path), json={}) as r:
                    assert r.status == 403, (method, path, c.me["role"], r.status)
                    refused.append((path, c.me["role"]))
            if method == "GET":
                continue
            holder = next(c for c in (olga, sam, ada) if auth.allowed(c.me["role"], perm))
            async with holder.request(method, _fill(path), json={}, csrf=False) as r:
                assert r.status == 403 and "CSRF" in (await r.json())["error"], (method, path)
        # operators: no commands, no contacts, no plans editor, no supervisor queue
        assert ("/api/sites/{number}/commands", "operator") in refused
        assert ("/api/sites/{number}/contacts/{name}/passcode", "operator") in refused
        assert ("/api/workflow-files/{kind}", "supervisor") in refused
        assert ("/supervisor", "operator") in refused


async def test_a_hold_up_through_the_api_and_its_passcodes_go_nowhere(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    said = ("Granite 2291", "harbour 9", "orchid 4417")
    async with console_receiver(tmp_path) as (rx, base, _), \
            Client(base) as olga, Client(base) as sam:
        await setup_workflow(rx)
        assert (await olga.login("olga")).status == 200
        assert (await sam.login("sam")).status == 200
        seen = []
        async with olga.request("GET", "/api/stream") as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "hello"

            async def collect():
                async for kind, msg in events:
                    seen.append((kind, msg))
            reader = asyncio.create_task(collect())
            await trip(rx, 1001, 1, 122, 4)
            a = await alarm_of(rx, 122)
            path = "/api/alarms/%d" % a.id
            w = await olga.json("GET", path + "/workflow")
            assert w["plan"]["sentence"].startswith("Plan 'holdup-bank' (v7, ")
            assert [s["state"] for s in w["steps"]] == ["open"] * 7
            assert w["call_list"]["words"] == "the hold-up call list"
            assert w["claim"] == {"handler": None, "since": None, "rev": 0, "banner": ""}
            assert [n["text"][:10] for n in w["notes"]] == ["Staff entr", "Vault time"]
            assert "real-holdup" in [d["code"] for d in w["dispositions"]]
            assert "false-animal" not in [d["code"] for d in w["dispositions"]]
            r = await olga.json("POST", path + "/steps/1", json={"action": "complete"})
            assert r["alarm"]["handler"] == "olga" and r["step"]["state"] == "completed"
            await sam.json("POST", path + "/steps/2", json={"action": "complete"}, status=409)
            await olga.json("POST", path + "/steps/2", json={"action": "explode"}, status=409)
            await olga.json("POST", path + "/steps/99", json={"action": "complete"},
                            status=404)
            await olga.json("POST", path + "/steps/5", json={"action": "complete"},
                            status=409)  # a passcode step: by a passcode only
            r = await olga.json("POST", path + "/calls", json={
                "contact": "Branch security desk", "phone": "+00 555 0100",
                "outcome": "no_answer"})
            assert r["call"]["outcome"] == "no_answer"
            await olga.json("POST", path + "/calls", json={
                "contact": "Branch security desk", "phone": "+00 555 0100",
                "outcome": "duress"}, status=409)
            await olga.json("POST", path + "/calls", json={
                "contact": "Nobody", "phone": "1", "outcome": "reached"}, status=404)
            body = {"contact": "Branch security desk", "phone": "+00 555 0100"}
            r = await olga.json("POST", path + "/passcode", json=dict(body, passcode=said[0]))
            assert r == {"outcome": "passcode_wrong", "step": None, "duress_alarm_id": None,
                         "sentence": "Branch security desk (security desk) gave a wrong "
                                     "passcode to olga (try 1 of 3)."}
            body = {"contact": "Anna Berg", "phone": "+00 555 0101"}
            r = await olga.json("POST", path + "/passcode", json=dict(body, passcode=said[1]))
            assert r["outcome"] == "duress" and r["duress_alarm_id"]
            duress = await rx.store.get_alarm(r["duress_alarm_id"])
            assert (duress.code, duress.raised_from, duress.plan_name) == (121, a.id,
                                                                            "holdup-bank")
            assert "duress passcode given by Anna Berg on a call" in duress.description
            r = await olga.json("POST", path + "/passcode", json=dict(body, passcode=said[2]))
            assert r["outcome"] == "passcode_correct" and r["step"]["position"] == 5
            r = await olga.json("POST", path + "/resolve", json={"disposition": "real-holdup"},
                                status=409)
            assert "mandatory steps are still open" in r["error"]
            await olga.json("POST", path + "/resolve", json={
                "disposition": "real-holdup", "override_reason": "police took over"},
                status=409)
            w = await sam.json("GET", path + "/workflow")
            await sam.json("POST", path + "/take-over", json={"seen_rev": 0}, status=409)
            await sam.json("POST", path + "/take-over", json={"seen_rev": w["claim"]["rev"]})
            r = await sam.json("POST", path + "/resolve", json={
                "disposition": "real-holdup", "note": "police on site",
                "override_reason": "police took over on site"})
            assert r["alarm"]["state"] == "resolved" and r["alarm"]["override_reason"]
            await wait_until(lambda: any(k == "alarm" and m["state"] == "resolved"
                                         for k, m in seen), what="resolve pushed live")
            reader.cancel()
        w = await olga.json("GET", path + "/workflow")
        assert [x["text"] for x in w["trail"]][-1].startswith(
            "Resolved by sam as 'Real: hold-up confirmed' with 4 mandatory steps open")
        changes = [m["change"] for k, m in seen if k == "workflow" and m["alarm_id"] == a.id]
        assert changes[:3] == ["step", "call", "passcode"] and "duress" in changes
        # nowhere: not in an answer (checked above), the live stream, a log
        # line, or anything the store wrote
        stream_text = repr(seen)
        logs = "\n".join(r.getMessage() for r in caplog.records)
        raw = b"".join(open(f, "rb").read() for f in
                       [str(tmp_path / "receiver.db")] + [str(tmp_path / "receiver.db") + x
                                                          for x in ("-wal",)]
                       if os.path.exists(f))
        for p in said:
            for variant in (p, p.lower(), p.replace(" ", "").lower()):
                assert variant not in stream_text and variant not in logs
                assert variant.encode() not in raw


async def test_an_escalation_alerts_every_console_and_notifies_supervisors(tmp_path):
    fast = (EX / "plans.toml").read_text().replace(
        "[escalation.classes.burglary]\nack_within_s = 45",
        "[escalation.classes.burglary]\nack_within_s = 1")
    assert fast != (EX / "plans.toml").read_text()
    async with console_receiver(tmp_path) as (rx, base, sink), \
            Client(base) as olga, Client(base) as sam:
        await setup_workflow(rx, fast)
        rx.config.notify_output = "police-feed"
        assert (await olga.login("olga")).status == 200
        assert (await sam.login("sam")).status == 200
        async with olga.request("GET", "/api/stream") as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "hello"
            await trip(rx, 1002, 1, 130, 3)  # the jeweller's safe: nobody acknowledges
            while True:
                kind, msg = await asyncio.wait_for(anext(events), 30)
                if kind == "escalation":
                    break
        a = await alarm_of(rx, 130, "1002")
        assert (msg["alarm_id"], msg["escalation"]) == (a.id, "ack")
        assert msg["sentence"] == ("Not acknowledged within 1 s: every console alerted, "
                                   "supervisors notified.")
        [alert] = (await olga.json("GET", "/api/escalations"))["alarms"]
        assert alert["id"] == a.id and alert["site_name"] == "Lindqvist Jewellers"
        # the supervisors' pager (an output) got it once
        await wait_until(lambda: [m for m in sink.received if m.get("type") == "escalation"],
                         what="escalation delivered")
        [page] = [m for m in sink.received if m.get("type") == "escalation"]
        assert page["alarm"] == "BURGLARY at Lindqvist Jewellers (account 1002)"
        # the runner again (a restart, another round) fires nothing twice
        assert await rx.escalations.tick(time.time()) is not None
        assert rx.escalations.fired == 1
        await olga.json("POST", "/api/alarms/%d/acknowledge" % a.id)
        assert (await olga.json("GET", "/api/escalations"))["alarms"] == []
        # not resolved in time: the supervisor queue (the runner told a later time)
        await sam.json("GET", "/api/supervisor-queue")
        await rx.escalations.tick(time.time() + 3601)
        q = await sam.json("GET", "/api/supervisor-queue")
        assert [x["id"] for x in q["alarms"]] == [a.id]
        assert q["alarms"][0]["claim_banner"].startswith("being handled by olga, ")
        await olga.json("GET", "/api/supervisor-queue", status=403)


async def test_notes_contacts_and_panel_command_words(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), \
            Client(base) as olga, Client(base) as sam:
        await setup_workflow(rx)
        assert (await olga.login("olga")).status == 200
        assert (await sam.login("sam")).status == 200
        site = "/api/sites/1001"
        import datetime as dt
        from zoneinfo import ZoneInfo
        friday = (dt.datetime.now(ZoneInfo("Europe/Vienna")) + dt.timedelta(days=10)).replace(
            hour=18, minute=0, second=0, microsecond=0)
        r = await olga.json("POST", site + "/notes", json={
            "text": "Owner on holiday", "expires_at": friday.strftime("%Y-%m-%dT%H:%M")},
            status=201)
        note = r["id"]
        await olga.json("POST", site + "/notes", json={"text": " "}, status=409)
        await olga.json("POST", site + "/notes", json={"text": "x", "expires_at": "friday"},
                        status=409)
        v = await olga.json("GET", site + "/workflow")
        [n] = [x for x in v["notes"] if x["id"] == note]
        assert n["when"] == friday.strftime("until %a %d %b 18:00") and n["author"] == "olga"
        assert n["expires_at"] == friday.timestamp()  # in the site's time zone
        await trip(rx, 1001, 1, 130, 3)
        a = await alarm_of(rx, 130)
        w = await olga.json("GET", "/api/alarms/%d/workflow" % a.id)
        assert w["notes"][0]["text"] == "Owner on holiday"  # temporary notes first
        await sam.json("DELETE", site + "/notes/%d" % note)
        # contacts: supervisors only; passcodes set, never shown
        await olga.json("POST", site + "/contacts", json={"name": "X", "phones": ["+00 1"]},
                        status=403)
        r = await sam.json("POST", site + "/contacts", json={
            "name": "Night guard", "role": "guard", "phones": ["+00 555 0177"]}, status=201)
        await sam.json("POST", site + "/contacts", json={"name": "Y", "phones": ["call me"]},
                       status=400)
        r = await sam.json("POST", site + "/contacts/Night%20guard/passcode",
                           json={"passcode": "moon river 5"})
        assert r == {"ok": True}
        v = await sam.json("GET", site + "/workflow")
        [g] = [c for c in v["contacts"] if c["name"] == "Night guard"]
        assert g["has_passcode"] and "moon" not in str(v)
        assert ("site.passcode", {"contact": "Night guard", "duress": False}) in [
            (c["action"], c["detail"]) for c in v["changes"]]
        await sam.json("POST", site + "/call-orders", json={"holdup": ["Night guard",
                                                                       "Nobody"]}, status=400)
        # panel commands: the confirmation names the site and the partition
        await olga.json("GET", site + "/commands", status=403)
        c = await sam.json("GET", site + "/commands")
        assert c["partitions"][0]["confirm"]["arm-away"] == (
            "Arm away partition 1 (lobby) of First City Bank, Main St branch (account 1001)?")
        assert not c["connected"]
        r = await sam.json("POST", "/api/accounts/1001/command",
                           json={"command": "arm-away", "partition": 1}, status=409)
        assert "no open TCP connection" in r["error"]


async def test_administrators_edit_plans_in_the_console(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), \
            Client(base) as ada, Client(base) as sam:
        assert (await ada.login("ada")).status == 200
        assert (await sam.login("sam")).status == 200
        f = await ada.json("GET", "/api/workflow-files/plans")
        assert f["text"] == "" and f["active"] is None  # built in
        bad = '[plans.x]\ntitle = "X"\n[[plans.x.steps]]\nkind = "wait"\n[assign]\ndefault = "x"\n'
        r = await ada.json("POST", "/api/workflow-files/plans", json={"text": bad}, status=400)
        assert r["error"] == ("console (ada): plan 'x', step 1 (wait): a wait step needs "
                              "minutes (1-240)")
        good = (EX / "plans.toml").read_text()
        r = await ada.json("POST", "/api/workflow-files/plans", json={"text": good,
                                                                      "check": True})
        assert r["ok"] and (await ada.json("GET", "/api/plans"))["file"]["label"] == "built in"
        r = await ada.json("POST", "/api/workflow-files/plans", json={"text": good})
        assert r["changed"]
        p = await sam.json("GET", "/api/plans")
        assert p["file"]["loaded_by"] == "ada" and not p["may_edit"]
        assert "holdup-bank" in [x["name"] for x in p["plans"]]
        r = await sam.json("GET", "/api/plans/resolve?account=1002&code=holdup")
        assert r["sentence"].startswith("Plan 'holdup' (v4, ")
        r = await sam.json("GET", "/api/plans/resolve?account=1001&code=121")
        assert r["sentence"].endswith("the site's plan for hold-up alarms.")
        await sam.json("GET", "/api/plans/resolve?account=1001&code=nope", status=400)
        await sam.json("POST", "/api/workflow-files/plans", json={"text": good}, status=403)
        f = await ada.json("GET", "/api/workflow-files/plans")
        assert f["text"] == good and f["history"][0]["active"]


async def test_what_a_panel_says_after_an_alarm(tmp_path):
    """CP-01 at the receiver: a cancel attaches to the alarms it cancels
    and closes those nobody works; a recent closing names the user who
    armed; a confirmed alarm says so and ranks above an unconfirmed one."""
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as olga:
        await setup_workflow(rx)
        assert (await olga.login("olga")).status == 200
        await trip(rx, 1001, 1, 401, 3, qualifier=1)  # opened by user 3
        await trip(rx, 1001, 2, 401, 3, qualifier=3)  # armed by user 3
        await trip(rx, 1001, 3, 134, 1)  # the entry door, after the abort window
        await trip(rx, 1001, 4, 459, 3)  # recent closing: user 3 armed just before
        await trip(rx, 1001, 5, 130, 2)  # a second detector
        await trip(rx, 1001, 6, 139, 2)  # confirmed
        door = await alarm_of(rx, 134)
        confirmed = await alarm_of(rx, 139)
        q = (await olga.json("GET", "/api/alarms"))["alarms"]
        mine = [x for x in q if x["account"] == "1001"]
        assert mine[0]["id"] == confirmed.id and mine[0]["confirmed"]  # ranked first
        w = await olga.json("GET", "/api/alarms/%d/workflow" % door.id)
        assert w["recent_close_user"] == 3 and w["cancel"] is None
        await olga.json("POST", "/api/alarms/%d/claim" % confirmed.id)  # olga works this one
        await trip(rx, 1001, 7, 406, 3)  # user 3 disarms within the cancel window
        await trip(rx, 1001, 8, 401, 3, qualifier=1)

        async def closed():
            return (await rx.store.get_alarm(door.id)).state == "resolved"
        await wait_until(closed, what="the cancelled alarm closed")
        w = await olga.json("GET", "/api/alarms/%d/workflow" % door.id)
        assert w["cancel"]["user"] == 3 and w["cancel"]["words"].startswith(
            "cancelled by user 3 after ")
        assert w["disposition"]["code"] == "cancelled-user"
        assert w["trail"][-1]["text"].startswith("Cancelled by user 3 after ")
        w = await olga.json("GET", "/api/alarms/%d/workflow" % confirmed.id)
        assert w["cancel"]["user"] == 3 and w["state"] == "pending"
        assert "left open: olga works the alarm" in w["trail"][-1]["text"]
