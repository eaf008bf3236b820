"""The centre's rules in the operator console, in a real headless Chromium
against a real receiver (tests/test_web_browser.py's harness): an
incident and a held zone in the queue and the alarm view, released by a
supervisor; a placement on test and a day's changed hours from the site
view; the printable report on the reports page.  Screenshots go to
docs/screenshots/ (docs/console.md shows them) with
GUARDLINE_UPDATE_SCREENSHOTS=1; LOOK at them."""

import datetime as dt
import os
import re
import time

from receiver.rules import schedules
from receiver.rules.schedules import DayPlan, Schedule
from testkit.wait import wait_until
from receiver.web.testing import PASSWORDS, console_receiver
from tests.test_web_browser import (DOC_SHOTS, UPDATE_SHOTS, async_api, console_page,
                                    panel_event, pytestmark)  # noqa: F401

expect = async_api.expect


def W(text):
    return schedules.parse_window(text, "test")


VAULT = Schedule("1001", 2, "Europe/Berlin", (DayPlan(W("08:30-09:00"), W("17:00-17:30")),) * 5
                 + (schedules.CLOSED,) * 2, 15, require_open=True)


async def login(page, base, name, where="/"):
    await page.goto(base + "/login?next=" + where)
    await page.fill("#name", name)
    await page.fill("#password", PASSWORDS[name])
    await page.click("button[type=submit]")
    await expect(page).to_have_url(base + where)
    await expect(page.locator("#live")).to_have_text("live")


async def test_incidents_held_zones_tests_schedules_and_reports_in_the_console(tmp_path):
    shots = DOC_SHOTS if UPDATE_SHOTS else str(tmp_path / "screenshots")
    os.makedirs(shots, exist_ok=True)
    async with console_receiver(tmp_path) as (rx, base, sink):
        await rx.set_schedule(VAULT, "ada")
        # the ATM's vibration sensor chatters: five alarms, the sixth holds the
        # zone, the rest are counted on it; the bank: a vault door and a
        # hold-up a minute apart, one incident
        for seq in range(1, 10):
            await panel_event(rx, 1003, seq, 130, 2)
        await panel_event(rx, 1001, 1, 130, 3, partition=2)
        await panel_event(rx, 1001, 2, 122, 4)
        await wait_until(lambda: rx.store.list_zone_holds(), what="the ATM's zone held")

        async with console_page(base, 1440, 900) as (page, problems, failed):
            await login(page, base, "sam")
            rows = page.locator("#queue tbody tr[data-alarm-id]")
            # (and 1004's silent path: 1004 never reports)
            await expect(page.locator("#queue-count")).to_contain_text(
                "9 open, 9 pending, in 3 incidents")
            await expect(rows).to_have_count(3)
            bank, atm = rows.nth(0), rows.nth(1)
            await expect(bank).to_contain_text("Hold-up")  # led by its most urgent
            await expect(bank).to_contain_text(
                "incident of 2 alarms: burglary zone 3, hold-up zone 4")
            await expect(atm).to_contain_text("incident of 6 alarms: 6 × burglary zone 2")
            await expect(atm).to_contain_text("HELD zone 2: 3 more signals")
            await bank.click()
            detail = page.locator("#detail")
            await expect(detail.locator("#incident li")).to_have_count(2)
            await expect(detail.locator("#incident")).to_contain_text("vault door")
            await page.screenshot(path=os.path.join(shots, "queue-incidents.png"))
            # the ATM's row: its anchor (the sixth alarm) has the count
            await atm.click()
            [hold] = await rx.store.list_zone_holds()
            await detail.locator("#incident a", has_text="").nth(4).click()
            await expect(detail).to_have_attribute("data-alarm-id", str(hold.alarm_id))
            await expect(detail.locator("#hold")).to_contain_text("zone 2: 3 more signals")
            await expect(detail.locator("#hold")).to_contain_text(
                "zone 2 held: more than 5 alarms in 10 min")
            # a new signal counts live
            await panel_event(rx, 1003, 10, 130, 2)
            await expect(detail.locator("#hold")).to_contain_text("zone 2: 4 more signals")
            await page.screenshot(path=os.path.join(shots, "held-zone.png"))
            await detail.locator("#release-zone").click()
            await expect(detail.locator("#hold")).to_contain_text("released by sam")
            await expect(atm).not_to_contain_text("HELD")
            assert await rx.store.list_zone_holds() == []
            # the bank's incident acknowledged, then a new alarm joins it: the
            # row is led by the (acknowledged) hold-up but reads pending
            for a in await rx.store.list_alarms():
                if a.account == "1001":
                    await rx.workflow.acknowledge(a.id, "sam")
            await expect(bank.locator(".c-state .state")).to_have_text("acknowledged")
            await panel_event(rx, 1001, 3, 130, 1)
            await expect(bank).to_contain_text("incident of 3 alarms")
            await expect(bank.locator(".c-state")).to_contain_text("pending")
            await expect(bank.locator(".c-state")).to_contain_text("1 of 3 new")

            # the site view: the vault's schedule, a day changed, a zone on test
            await page.goto(base + "/site/1001")
            sched = page.locator("#schedules")
            await expect(sched).to_contain_text("Partition 2 · vault")
            await expect(sched.locator(".week li")).to_have_count(6)
            tz = VAULT.tz
            today = schedules.local(tz, time.time())[0]
            monday = today + dt.timedelta(days=(7 - today.weekday()) % 7 or 7)
            await page.fill("#change-date", monday.isoformat())
            await page.fill("#change-open", "10:30-11:00")
            await page.fill("#change-close", "09:00-09:30")
            await page.click("#change-button")
            await expect(page.locator("#change-box .error")).to_contain_text(
                "must follow each other")
            await page.fill("#change-close", "17:00-17:30")
            await page.fill("#change-reason", "staff training")
            await page.click("#change-button")
            await expect(sched.locator(".change")).to_contain_text(
                "partition 2 on %s: open 10:30-11:00, close 17:00-17:30, by sam"
                % monday.isoformat())
            await expect(sched.locator(".week")).to_contain_text("changed by sam")
            await page.select_option("#test-scope", "zone")
            await page.fill("#test-number", "4")
            await page.fill("#test-minutes", "45")
            await page.fill("#test-reason", "hold-up button swap")
            await page.click("#place-test-button")
            banner = page.locator("#test-banner")
            await expect(banner).to_contain_text("ON TEST zone 4 of account 1001 until")
            await expect(banner).to_contain_text("(sam: hold-up button swap)")
            await expect(page.locator("#rules-audit li").first).to_contain_text(
                "Zone 4 of account 1001 placed on test by sam")
            await page.screenshot(path=os.path.join(shots, "site-rules.png"), full_page=True)
            await banner.locator(".end-test").click()
            await expect(banner).to_be_hidden()
            await expect(page.locator("#rules-audit li").first).to_contain_text(
                "ended early by sam")

            # the reports page: the printable report in its frame
            await page.click("nav >> text=Reports")
            await expect(page).to_have_url(base + "/reports")
            frame = page.frame_locator("#report")
            await expect(frame.locator("h1")).to_contain_text("centre report")
            await expect(frame.locator("h2").first).to_have_text("Alarms by class")
            await expect(frame.locator("svg").first).to_be_visible()
            await expect(frame.locator("body")).to_contain_text("ATM 0417, Station Sq (1003)")
            await expect(page.locator("#report-csv")).to_have_attribute(
                "href", re.compile(r"^/api/reports/center\.csv\?from="))
            await page.screenshot(path=os.path.join(shots, "reports.png"))
            assert problems == [], problems
            assert [f for f in failed if f[1] != "/api/schedules/1001/2/changes"] == [], failed

        # an operator: no Reports, no release, but a test and a day's change
        # of their own (the branch calls), not the schedule itself
        async with console_page(base, 1280, 800) as (page, problems, failed):
            await login(page, base, "olga")
            await expect(page.locator("nav")).not_to_contain_text("Reports")
            await page.goto(base + "/site/1001")
            await expect(page.locator("#place-test")).to_be_visible()
            await expect(page.locator("#change-button")).to_be_visible()
            assert problems == [], problems


async def test_the_centres_on_test_page(tmp_path):
    """The On test page: empty says so; two placements made over the API
    appear live, soonest ending first, with their sites, what in words,
    reasons and who; one whose time is up is not shown as on test; End
    test asks first (a live update meanwhile keeps the question), posts
    with the session's CSRF token and the row goes;
    a post without the token is refused (every role holds test.place)."""
    from receiver.rules import testmode
    from receiver.web.testing import Client

    shots = DOC_SHOTS if UPDATE_SHOTS else str(tmp_path / "screenshots")
    os.makedirs(shots, exist_ok=True)
    async with console_receiver(tmp_path) as (rx, base, sink):
        # a test whose time is up (ended by the receiver's timer, or about to be)
        now = time.time()
        await rx.store.place_on_test(testmode.Placement(
            "1003", now - 3600, now - 60, "ATM cassette swap", "ada"), now - 3600)
        async with console_page(base, 1440, 900) as (page, problems, failed):
            await login(page, base, "olga")
            await page.click("nav >> text=On test")
            await expect(page).to_have_url(base + "/tests")
            await expect(page.locator("#tests-none")).to_have_text("Nothing is on test.")
            await expect(page.locator("#tests")).to_be_hidden()
            ended = page.locator("#tests-ended")
            await expect(ended).to_contain_text(
                "the whole account at ATM 0417, Station Sq account 1003: ended (time up) "
                "(placed by ada: ATM cassette swap)")

            async with Client(base) as sam:
                await sam.login("sam")
                long = (await sam.json("POST", "/api/tests", status=201, json={
                    "account": "1002", "minutes": 120,
                    "reason": "panel battery replacement"}))["placement"]
                short = (await sam.json("POST", "/api/tests", status=201, json={
                    "account": "1001", "zone": 4, "minutes": 45,
                    "reason": "hold-up button swap"}))["placement"]
            # live: both appear without a reload, soonest ending first
            rows = page.locator("#tests tbody tr")
            await expect(rows).to_have_count(2)
            await expect(page.locator("#tests-none")).to_be_hidden()
            first, second = rows.nth(0), rows.nth(1)
            await expect(first).to_have_attribute("data-placement-id", str(short["id"]))
            await expect(first.locator(".c-site")).to_contain_text(
                "First City Bank, Main St branch account 1001")
            await expect(first.locator(".c-what")).to_have_text(
                "ON TEST zone 4 (teller hold-up button)")
            await expect(first.locator(".c-reason")).to_have_text("hold-up button swap")
            await expect(first.locator(".c-by")).to_have_text("sam")
            await expect(first.locator(".c-left")).to_have_text(re.compile(r"^4[45] min \d\d s$"))
            await expect(second.locator(".c-site")).to_contain_text("Lindqvist Jewellers")
            await expect(second.locator(".c-what")).to_have_text("ON TEST the whole account")
            await expect(second.locator(".c-reason")).to_have_text("panel battery replacement")
            await expect(second.locator(".c-left")).to_have_text(
                re.compile(r"^1 h 5\d min$|^2 h 00 min$"))
            # the one whose time is up is not on test
            await expect(page.locator("#tests")).not_to_contain_text("ATM")
            # the countdown runs
            before = await first.locator(".c-left").text_content()
            await expect(first.locator(".c-left")).not_to_have_text(before)
            await page.screenshot(path=os.path.join(shots, "on-test.png"))
            await page.set_viewport_size({"width": 390, "height": 844})
            await expect(first.locator(".c-reason")).to_be_visible()
            await page.screenshot(path=os.path.join(shots, "on-test-narrow.png"),
                                  full_page=True)
            await page.set_viewport_size({"width": 1440, "height": 900})

            # End test asks first; "Keep it on test" keeps it
            await first.locator(".end-test").click()
            await expect(first.locator(".end-question")).to_have_text(
                "End the test of zone 4 (teller hold-up button) at First City Bank, Main St "
                "branch? Its events raise alarms again at once.")
            await first.locator(".end-no").click()
            await expect(first.locator(".end-confirm")).to_be_hidden()
            assert short["id"] in [x.id for x in await rx.store.list_test_placements()]
            await first.locator(".end-test").click()
            # a live update while it asks (a test placed elsewhere) keeps the question
            async with Client(base) as ada:
                await ada.login("ada")
                await ada.json("POST", "/api/tests", status=201, json={
                    "account": "1004", "partition": 1, "minutes": 90,
                    "reason": "smoke detector cleaning"})
            await expect(rows).to_have_count(3)
            await expect(rows.nth(1).locator(".c-what")).to_have_text(
                "ON TEST partition 1 (house)")
            await expect(first.locator(".end-question")).to_be_visible()
            csrf = await page.evaluate("GL.me.csrf")
            async with page.expect_request(lambda r: r.url.endswith(
                    "/api/tests/%d/end" % short["id"])) as req:
                await first.locator(".end-yes").click()
            assert (await req.value).headers.get("x-csrf-token") == csrf
            await expect(rows).to_have_count(2)
            await expect(rows.nth(1)).to_have_attribute("data-placement-id", str(long["id"]))
            await expect(ended.locator("li").first).to_contain_text(
                "zone 4 (teller hold-up button) at First City Bank, Main St branch account "
                "1001: ended early by olga (placed by sam: hold-up button swap)")
            [p] = [x for x in await rx.store.list_test_placements(live=False)
                   if x.id == short["id"]]
            assert p.ended_by == "olga"
            # without the token the same request is refused; the test stays
            status = await page.evaluate(
                "fetch('/api/tests/%d/end', {method: 'POST', credentials: 'same-origin'})"
                ".then(r => r.status)" % long["id"])
            assert status == 403
            await expect(rows).to_have_count(2)
            assert [x.account for x in await rx.store.list_test_placements()
                    if x.account != "1003"] == ["1004", "1002"]
            assert problems == [], problems
            assert failed == [("POST", "/api/tests/%d/end" % long["id"], 403)], failed
