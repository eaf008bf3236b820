"""The console's rules API (receiver.web.rules_api) against a real receiver
on real sockets: who may do what, and what each route changes, audits and
tells the consoles.  The pages themselves are in tests/test_rules_browser.py."""

import datetime as dt
import time

from aiohttp import web

from receiver.messages import RulesUpdate
from receiver.rules import reports, schedules
from receiver.web import rules_api
from receiver.web.testing import Client, console_receiver
from tests.test_web_api import open_alarm, trip

BANK_DOC = {"timezone": "Europe/Berlin", "tolerance_min": 15, "require_open": False,
            "week": {"mon": {"open": "08:00-08:30", "close": "17:00-17:30"},
                     "tue": "closed", "wed": "closed", "thu": "closed", "fri": "closed",
                     "sat": "closed", "sun": "closed"}}


def _fill(path: str) -> str:
    return (path.replace("{id}", "1").replace("{number}", "1001").replace("{account}", "1001")
            .replace("{partition}", "1").replace("{zone}", "4"))


async def test_every_rules_route_needs_a_session_and_its_permission(tmp_path):
    routes = rules_api.add_routes(web.Application())
    assert all(perm is not None for _, _, perm in routes)
    async with console_receiver(tmp_path) as (rx, base, _):
        async with Client(base) as c:
            for method, path, _ in routes:
                async with c.request(method, _fill(path)) as r:
                    want = 302 if path in ("/reports", "/tests") else 401  # pages: to /login
                    assert r.status == want, (method, path, r.status)
        async with Client(base) as olga:  # an operator
            await olga.login("olga")
            for method, path in (("PUT", "/api/schedules/1001/1"),
                                 ("POST", "/api/accounts/1001/zones/4/release"),
                                 ("GET", "/api/reports/center")):
                body = await olga.json(method, path, status=403, json={})
                assert "your role (operator) may not" in body["error"]
            # a day's change is an operator's (the branch calls): past the
            # permission, refused here for want of a schedule
            nope = await olga.json("POST", "/api/schedules/1001/1/changes", status=404,
                                   json={"closed": True, "reason": "stock-taking"})
            assert "has no schedule" in nope["error"]
            # a test placement is an operator's, but not without the CSRF token
            await olga.json("POST", "/api/tests", status=403, csrf=False,
                            json={"account": "1001", "reason": "x"})
        async with Client(base) as sam:  # a supervisor: no schedule of his own
            await sam.login("sam")
            await sam.json("PUT", "/api/schedules/1001/1", status=403, json=BANK_DOC)


async def test_schedules_and_changes_through_the_console_are_audited_and_told(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _):
        sub = rx.subscribe()
        async with Client(base) as ada, Client(base) as sam:
            await ada.login("ada")
            await sam.login("sam")
            bad = await ada.json("PUT", "/api/schedules/1001/1", status=400,
                                 json=dict(BANK_DOC, timezone="Mars/Olympus"))
            assert "unknown time zone 'Mars/Olympus'" in bad["error"]
            out = await ada.json("PUT", "/api/schedules/1001/1", json=BANK_DOC)
            assert out["changed"] is True
            assert (await ada.json("PUT", "/api/schedules/1001/1", json=BANK_DOC))[
                "changed"] is False
            site = await sam.json("GET", "/api/sites/1001/rules")
            [sch] = site["schedules"]
            assert sch["partition_name"] == "lobby" and len(sch["week"]) == 7
            assert sch["words"].startswith("mon open 08:00-08:30, close 17:00-17:30; "
                                           "tue-sun closed")
            # a change for the coming Monday (a day that is not over)
            tz = schedules.Schedule.from_dict(dict(BANK_DOC, account="1001", partition=1)).tz
            today = schedules.local(tz, time.time())[0]
            monday = today + dt.timedelta(days=(7 - today.weekday()) % 7 or 7)
            bad = await sam.json("POST", "/api/schedules/1001/1/changes", status=400,
                                 json={"date": monday.isoformat(), "open": "10:30-11:00",
                                       "close": "09:00-09:30"})
            assert "must follow each other" in bad["error"]
            c = (await sam.json("POST", "/api/schedules/1001/1/changes", status=201,
                                json={"date": monday.isoformat(), "open": "10:30-11:00",
                                      "close": "17:00-17:30", "reason": "staff training"}))[
                "change"]
            assert c["by"] == "sam" and c["plan_words"] == "open 10:30-11:00, close 17:00-17:30"
            site = await sam.json("GET", "/api/sites/1001/rules")
            assert [x["id"] for x in site["changes"]] == [c["id"]]
            assert any("changed by sam" in w for w in site["schedules"][0]["week"])
            await sam.json("DELETE", "/api/schedules/1001/1/changes/%d" % c["id"])
            again = await sam.json("DELETE", "/api/schedules/1001/1/changes/%d" % c["id"],
                                   status=409)
            assert "no longer in force" in again["error"]
            site = await sam.json("GET", "/api/sites/1001/rules")
            assert [a["action"] for a in site["audit"]] == [
                "schedule.cancel", "schedule.change", "schedule.set"]
            audit = (await sam.json("GET", "/api/audit"))["audit"]
            assert {"schedule.set", "schedule.change", "schedule.cancel"} <= {
                a["action"] for a in audit}
        told = []
        while not sub.empty():
            m = sub.get_nowait()
            if isinstance(m, RulesUpdate):
                told.append(m.action)
        assert told == ["schedule.set", "schedule.change", "schedule.cancel"]


async def test_a_zone_on_test_opens_no_alarm_and_the_test_ends(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, sink):
        async with Client(base) as olga:
            await olga.login("olga")
            bad = await olga.json("POST", "/api/tests", status=400,
                                  json={"account": "1001", "zone": 4, "reason": " "})
            assert "needs a reason" in bad["error"]
            nope = await olga.json("POST", "/api/tests", status=404,
                                   json={"account": "4242", "reason": "swap"})
            assert "no account 4242" in nope["error"]
            too_long = await olga.json("POST", "/api/tests", status=400, json={
                "account": "1001", "zone": 4, "minutes": 73 * 60, "reason": "swap"})
            assert "at most 72 h" in too_long["error"]
            p = (await olga.json("POST", "/api/tests", status=201, json={
                "account": "1001", "zone": 4, "minutes": 30, "reason": "button swap"}))[
                "placement"]
            assert p["by"] == "olga" and p["words"] == "zone 4 of account 1001"
            # the hold-up button under test: stored, marked, no alarm, not routed
            await trip(rx, 1001, 1, 122, 4)
            await trip(rx, 1001, 2, 130, 1)  # another zone: an alarm
            await open_alarm(rx, "1001", 130)
            evs = await olga.json("GET", "/api/events?account=1001")
            holdup = next(e for e in evs["events"] if e["code"] == 122)
            assert holdup["test_placement"] == p["id"]
            assert not [a for a in await rx.store.list_alarms() if a.code == 122]
            [live] = (await olga.json("GET", "/api/tests"))["placements"]
            assert live["id"] == p["id"]
            # the On test page's words: the site, what with its name, in force
            assert (live["site_name"], live["what"], live["state_words"], live["in_force"]) == (
                "First City Bank, Main St branch", "zone 4 (teller hold-up button)", "on test",
                True)
            [on_site] = (await olga.json("GET", "/api/sites/1001/rules"))["placements"]
            assert on_site["in_force"] and on_site["what"] == live["what"]
            ended = (await olga.json("POST", "/api/tests/%d/end" % p["id"]))["placement"]
            assert ended["ended_by"] == "olga"
            await olga.json("POST", "/api/tests/%d/end" % p["id"], status=409)
            await trip(rx, 1001, 3, 122, 4)
            await open_alarm(rx, "1001", 122)  # not on test any more


async def test_a_runaway_zone_is_held_shown_with_its_count_and_released(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _):
        for seq in range(1, 9):  # the ATM's vibration sensor chatters
            await trip(rx, 1003, seq, 130, 2)
        async with Client(base) as olga, Client(base) as sam:
            await olga.login("olga")
            await sam.login("sam")
            [hold] = (await olga.json("GET", "/api/holds"))["holds"]
            assert (hold["account"], hold["zone"], hold["signals"]) == ("1003", 2, 2)
            assert hold["sentence"] == "zone 2: 2 more signals"
            anchor = hold["alarm_id"]
            beside = await olga.json("GET", "/api/alarms/%d/rules" % anchor)
            assert beside["hold"]["count"] == 2 and len(beside["hold"]["events"]) == 2
            inc = beside["incident"]
            assert len(inc["members"]) == 6  # grouped: one incident of the site
            assert [m["number_label"] for m in inc["members"]][0].startswith("zone 2")
            await olga.json("POST", "/api/accounts/1003/zones/2/release", status=403)
            out = await sam.json("POST", "/api/accounts/1003/zones/2/release")
            assert out["hold"]["released_by"] == "sam"
            again = await sam.json("POST", "/api/accounts/1003/zones/2/release", status=409)
            assert "is not held" in again["error"]
            assert (await olga.json("GET", "/api/holds"))["holds"] == []


async def test_reports_as_json_csv_and_the_printable_page(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _):
        await trip(rx, 1002, 1, 130, 3)
        a = await open_alarm(rx, "1002", 130)
        await rx.workflow.acknowledge(a.id, "olga")
        await rx.workflow.step(a.id, 1, "complete", "olga")  # the built-in plan's instruction
        await rx.workflow.resolve(a.id, "olga", "false", note="false alarm, door not shut")
        hour = "from=%d" % (time.time() - 3600)
        async with Client(base) as sam:
            await sam.login("sam")
            r = await sam.json("GET", "/api/reports/center?" + hour)
            names = [s["name"] for s in r["sections"]]
            assert names == list(reports.SECTIONS)
            false = next(s for s in r["sections"] if s["name"] == "false_alarms")
            assert false["rows"][0][:5] == ["Lindqvist Jewellers (1002)", 1, 1, 1, 100.0]
            bad = await sam.json("GET", "/api/reports/center?%s&to=%d" % (hour, 10), status=400)
            assert bad["error"] == "to must be after from"
            async with sam.request("GET", "/api/reports/center.csv?%s&section=operators"
                                   % hour) as resp:
                assert resp.status == 200 and "attachment" in resp.headers[
                    "Content-Disposition"]
                text = await resp.text()
                assert text.startswith("operator,acknowledged,ack p50,resolved,resolve p50\n"
                                       "olga,1,")
            async with sam.request("GET", "/api/reports/center.html?" + hour) as resp:
                page = await resp.text()
                csp = resp.headers["Content-Security-Policy"]
                assert csp.startswith("default-src 'none'; style-src 'sha256-")
                assert "frame-ancestors 'self'" in csp and "script" not in csp
                assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
                assert "<svg" in page and "Lindqvist Jewellers (1002)" in page
            audit = (await sam.json("GET", "/api/audit"))["audit"]
            assert "report.export" in {x["action"] for x in audit}
