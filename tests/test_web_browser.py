"""The operator console in a real headless Chromium (Playwright), against a
real receiver: log in, watch an alarm tripped by a simulated panel (native
protocol over TCP) appear live, acknowledge and resolve it with a note,
and read the audit trail.  Screenshots of the main pages go to
docs/screenshots/ (docs/console.md shows them)."""

import os
import re

import pytest

from receiver.simpanel import SimPanel, event_msg
from receiver.testing import wait_until
from receiver.web.testing import PASSWORDS, console_receiver
from receiver.web.users import SQLiteUserStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOC_SHOTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "screenshots")
# The screenshots are always taken (rendering each page is part of the
# test); they replace docs/screenshots/ only when asked, so an ordinary
# test run leaves the work tree clean:
#   GUARDLINE_UPDATE_SCREENSHOTS=1 pytest tests/test_web_browser.py
UPDATE_SHOTS = os.environ.get("GUARDLINE_UPDATE_SCREENSHOTS") == "1"
# Generous bound for a live update to reach the page (not a timing assertion).
UI_TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed at %s" % CHROMIUM)
async_api = pytest.importorskip("playwright.async_api",
                                reason="playwright is not installed (pip install '.[web-test]')")
expect = async_api.expect
expect.set_options(timeout=UI_TIMEOUT_MS)


async def panel_event(rx, account, seq, code, zone, partition=1, qualifier=1):
    host, port = rx.addresses["tcp"][0]
    p = SimPanel(account, rx.account(str(account)).key, host, port)
    await p.connect()
    try:
        await p.deliver(seq, event_msg(code, qualifier, partition, zone))
    finally:
        await p.close()


async def test_operator_handles_a_live_alarm_in_the_browser(tmp_path):
    SHOTS = DOC_SHOTS if UPDATE_SHOTS else str(tmp_path / "screenshots")
    os.makedirs(SHOTS, exist_ok=True)
    async with console_receiver(tmp_path) as (rx, base, sink):
        # some history and open alarms before the operator logs in
        await panel_event(rx, 1002, 1, 401, 3, qualifier=3)  # jeweller armed by user 3
        await panel_event(rx, 1002, 2, 130, 3)  # safe: burglary
        await panel_event(rx, 1003, 1, 137, 1)  # ATM tamper
        await panel_event(rx, 1001, 1, 401, 2, qualifier=3)  # bank lobby armed
        await panel_event(rx, 1001, 2, 302, 0, partition=0)  # low battery
        await wait_until(lambda: rx.supervisor.failed(), what="1004 supervision failure")

        async with async_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
                ctx.set_default_timeout(UI_TIMEOUT_MS)
                page = await ctx.new_page()
                problems, failed = [], []  # script errors, CSP refusals; HTTP errors
                page.on("console", lambda m: problems.append(m.text) if m.type in (
                    "error", "warning") and "Failed to load resource" not in m.text else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("response", lambda r: failed.append(
                    (r.request.method, r.url[len(base):], r.status)) if r.status >= 400 else None)

                # not logged in: the queue sends us to the login page
                await page.goto(base + "/")
                await expect(page).to_have_url(re.compile(r"/login\?next=/$"))
                await page.fill("#name", "olga")
                await page.fill("#password", "wrong password!")
                await page.click("button[type=submit]")
                await expect(page.locator("#login-error")).to_contain_text("wrong name")
                await page.fill("#password", PASSWORDS["olga"])
                await page.click("button[type=submit]")
                await expect(page).to_have_url(base + "/")
                await expect(page.locator("#who")).to_have_text("olga (operator)")
                await expect(page.locator("#live")).to_have_text("live")
                rows = page.locator("#queue tbody tr[data-alarm-id]")
                # burglary, tamper, the bank's low battery, 1004's communication trouble
                await expect(rows).to_have_count(4)

                # a hold-up at the bank arrives while the page is open: no reload
                await page.evaluate("window.__stillTheSamePage = true")
                await panel_event(rx, 1001, 3, 122, 4)
                await expect(rows).to_have_count(5)
                first = rows.first
                await expect(first).to_contain_text("Hold-up")
                await expect(first).to_contain_text("teller hold-up button")
                await expect(first).to_contain_text("First City Bank")
                await expect(page.locator("#banner")).to_contain_text("NEW HOLD-UP ALARM")
                assert await page.evaluate("window.__stillTheSamePage === true")
                alarm_id = await first.get_attribute("data-alarm-id")

                await first.click()
                detail = page.locator("#detail")
                await expect(detail).to_have_attribute("data-alarm-id", alarm_id)
                await expect(detail).to_contain_text("Central Police Station")
                await page.screenshot(path=os.path.join(SHOTS, "alarm-queue.png"))

                await page.click("#ack")
                audit = page.locator("#audit li")
                await expect(audit.nth(1)).to_contain_text("olga")
                await expect(audit.nth(1)).to_contain_text("pending → acknowledged")
                note = "Police dispatched; manager confirms staff safe"
                await page.fill("#note", note)
                # another alarm arrives while the note is being typed: the
                # queue updates, the half-written note stays
                await panel_event(rx, 1003, 2, 130, 2)
                await expect(rows).to_have_count(6)
                await expect(page.locator("#note")).to_have_value(note)
                await page.click("#resolve")
                await expect(page.locator("#resolved tbody")).to_contain_text(note)
                await expect(rows).to_have_count(5)
                await page.locator("#resolved tbody tr[data-alarm-id='%s']" % alarm_id).click()
                await expect(audit).to_have_count(3)
                await expect(audit.nth(2)).to_contain_text("acknowledged → resolved")
                await expect(audit.nth(2)).to_contain_text("manager confirms staff safe")
                a = await rx.store.get_alarm(int(alarm_id))
                assert (a["state"], a["acknowledged_by"], a["resolved_by"]) == (
                    "resolved", "olga", "olga")

                # the other main pages render the same receiver's state
                await page.goto(base + "/site/1001")
                await expect(page.locator("#site-title")).to_have_text(
                    "First City Bank, Main St branch")
                await expect(page.locator("#zones")).to_contain_text("teller hold-up button")
                await expect(page.locator("#partitions")).to_contain_text("armed")
                await expect(page.locator("#troubles")).to_contain_text("Low system battery")
                await page.screenshot(path=os.path.join(SHOTS, "site-view.png"), full_page=True)

                await page.goto(base + "/panels")
                await expect(page.locator("#panels tbody tr")).to_have_count(4)
                await page.click("button[data-filter=not_heard]")
                await expect(page.locator("#panels tbody tr")).to_have_count(1)
                await expect(page.locator("#panels tbody")).to_contain_text("Residence Okafor")
                await page.click("button[data-filter='']")
                await expect(page.locator("#panels tbody tr")).to_have_count(4)
                await page.screenshot(path=os.path.join(SHOTS, "panels-overview.png"))

                await page.goto(base + "/history")
                await expect(page.locator("#events tbody tr")).to_have_count(8)
                await page.select_option("#class", "burglary")
                await page.click("#search button[type=submit]")
                await expect(page.locator("#events tbody tr")).to_have_count(2)
                await expect(page.locator("#export")).to_have_attribute(
                    "href", re.compile(r"class=burglary"))
                await page.select_option("#class", "")
                await page.click("#search button[type=submit]")
                await expect(page.locator("#events tbody tr")).to_have_count(8)
                await page.screenshot(path=os.path.join(SHOTS, "history.png"))

                await page.goto(base + "/dispatch")
                await expect(page.locator("#dispatch-alarms")).to_contain_text(
                    "District 1 Command")
                await page.screenshot(path=os.path.join(SHOTS, "dispatch.png"))

                # an operator has no Users page; logging out ends the session
                await expect(page.locator("nav")).not_to_contain_text("Users")
                await page.click("#logout")
                await expect(page).to_have_url(re.compile(r"/login"))
                await page.goto(base + "/history")
                await expect(page).to_have_url(re.compile(r"/login\?next=/history"))
                assert problems == [], problems
                assert failed == [("POST", "/api/login", 401)]  # only the mistyped password
                for name in ("alarm-queue", "site-view", "panels-overview", "history",
                             "dispatch"):
                    with open(os.path.join(SHOTS, name + ".png"), "rb") as f:
                        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
            finally:
                await browser.close()


async def test_administrator_pages_render_and_manage_users(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, sink):
        async with async_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                problems = []
                page.on("console", lambda m: problems.append(m.text)
                        if m.type in ("error", "warning") else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                await page.goto(base + "/users")
                await expect(page).to_have_url(re.compile(r"/login\?next=/users$"))
                await page.fill("#name", "ada")
                await page.fill("#password", PASSWORDS["ada"])
                await page.click("button[type=submit]")
                await expect(page).to_have_url(base + "/users")  # back where she was going
                await expect(page.locator("#users tbody tr")).to_have_count(3)
                await page.fill("#new-name", "nina")
                await page.select_option("#new-role", "supervisor")
                await page.fill("#new-password", "nina-long-password")
                await page.click("#add-user button[type=submit]")
                await expect(page.locator("#users tbody tr")).to_have_count(4)
                await expect(page.locator("#users tbody")).to_contain_text("nina")
                await page.goto(base + "/security")
                await expect(page.locator("#audit-log")).to_contain_text("user.add")
                await expect(page.locator("#audit-log")).to_contain_text("name=nina")
                await expect(page.locator("nav")).to_contain_text("Users")
                assert problems == [], problems
            finally:
                await browser.close()
    u = await SQLiteUserStore(str(tmp_path / "receiver.db")).get("nina")
    assert u is not None and u.role == "supervisor"
