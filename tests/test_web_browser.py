"""The operator console in a real headless Chromium (Playwright), against a
real receiver: log in, watch an alarm tripped by a simulated panel (native
protocol over TCP) appear live, acknowledge and resolve it with a note,
and read the audit trail.  Screenshots of the main pages go to
docs/screenshots/ (docs/console.md shows them)."""

import contextlib
import os
import re

import pytest

from receiver.ingest import Hygiene
from receiver.rules.hygiene import GroupingPolicy
from receiver.web.testing import PASSWORDS, console_receiver
from receiver.web.users import SQLiteUserStore
from testkit.dispatch import JsonLinesSink
from testkit.session_panel import SessionPanel, event_msg
from testkit.wait import wait_until

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


@contextlib.asynccontextmanager
async def console_page(base: str, width: int, height: int):
    """A page in a fresh headless Chromium at width x height; yields (page,
    problems, failed): the script errors and CSP refusals seen, and the
    requests answered with an HTTP error, for the test to check."""
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(viewport={"width": width, "height": height})
            ctx.set_default_timeout(UI_TIMEOUT_MS)
            page = await ctx.new_page()
            problems = []
            page.on("console", lambda m: problems.append(m.text) if m.type in (
                "error", "warning") and "Failed to load resource" not in m.text else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            failed = []
            page.on("response", lambda r: failed.append(
                (r.request.method, r.url[len(base):], r.status)) if r.status >= 400 else None)
            yield page, problems, failed
        finally:
            await browser.close()


async def panel_event(rx, account, seq, code, zone, partition=1, qualifier=1):
    host, port = rx.addresses["tcp"][0]
    p = SessionPanel(account, rx.account(str(account)).key, host, port)
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

        async with console_page(base, 1440, 900) as (page, problems, failed):

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

            # a hold-up at the bank arrives while the page is open: no reload;
            # it joins the bank's open incident (its low battery, minutes
            # ago: [hygiene] group_window_s), whose row it now leads
            await page.evaluate("window.__stillTheSamePage = true")
            await panel_event(rx, 1001, 3, 122, 4)
            await expect(page.locator("#queue-count")).to_contain_text("5 open")
            await expect(rows).to_have_count(4)
            first = rows.first
            await expect(first).to_contain_text("Hold-up")
            await expect(first).to_contain_text("teller hold-up button")
            await expect(first).to_contain_text("First City Bank")
            await expect(first).to_contain_text("incident of 2 alarms")
            await expect(page.locator("#banner")).to_contain_text("NEW HOLD-UP ALARM")
            assert await page.evaluate("window.__stillTheSamePage === true")
            alarm_id = await first.get_attribute("data-alarm-id")

            await first.click()
            detail = page.locator("#detail")
            await expect(detail).to_have_attribute("data-alarm-id", alarm_id)
            await expect(detail).to_contain_text("Central Police Station")
            await page.screenshot(path=os.path.join(SHOTS, "alarm-queue.png"))

            await page.click("#ack")
            audit = page.locator("#audit")
            await expect(audit).to_contain_text("Acknowledged by olga.")
            # without plans loaded every alarm gets the built-in plan: its
            # instruction is done, then the alarm resolves with a disposition
            await expect(page.locator("#plan-sentence")).to_contain_text(
                "the center-wide fallback plan")
            await page.click("#steps li[data-position='1'] button[data-action='complete']")
            await expect(page.locator("#steps li[data-position='1']")).to_have_attribute(
                "data-state", "completed")
            await page.select_option("#disposition", "real")
            note = "Police dispatched; manager confirms staff safe"
            await page.fill("#note", note)
            # another alarm arrives while the note is being typed: the
            # queue updates (the ATM's incident grows), the half-written
            # note stays
            await panel_event(rx, 1003, 2, 130, 2)
            await expect(page.locator("#queue-count")).to_contain_text("6 open")
            await expect(page.locator("#note")).to_have_value(note)
            await expect(page.locator("#disposition")).to_have_value("real")
            await page.click("#resolve")
            await expect(page.locator("#resolved tbody")).to_contain_text(note)
            await expect(page.locator("#queue-count")).to_contain_text("5 open")
            await expect(rows).to_have_count(4)
            await page.locator("#resolved tbody tr[data-alarm-id='%s']" % alarm_id).click()
            await expect(audit).to_contain_text("Resolved by olga as 'Real alarm'.")
            await expect(audit).to_contain_text("manager confirms staff safe")
            a = await rx.store.get_alarm(int(alarm_id))
            assert (a.state, a.acknowledged_by, a.resolved_by) == (
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
            # 1004 never reported: "never heard", not the receiver's start time
            await expect(page.locator("#panels tr[data-account='1004'] .last-heard")).to_have_text(
                "never heard")
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


async def test_administrator_pages_render_and_manage_users(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, sink):
        async with console_page(base, 1280, 800) as (page, problems, failed):
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
            assert problems == [] and failed == [], (problems, failed)
    u = await SQLiteUserStore(str(tmp_path / "receiver.db")).get("nina")
    assert u is not None and u.role == "supervisor"


async def deliver_many(rx, account, first_seq, events):
    """Several events from one simulated panel over one TCP connection."""
    host, port = rx.addresses["tcp"][0]
    p = SessionPanel(account, rx.account(str(account)).key, host, port)
    await p.connect()
    try:
        for i, (code, zone, partition) in enumerate(events):
            await p.deliver(first_seq + i, event_msg(code, 1, partition, zone))
    finally:
        await p.close()


# What the layout check measures on the page: every queue row one line tall,
# no cell of the state column cut, the queue not wider than its card.
QUEUE_LAYOUT_JS = """() => {
  const rows = [...document.querySelectorAll('#queue tbody tr[data-alarm-id]')];
  const box = document.querySelector('#queue').parentElement;
  const line = parseFloat(getComputedStyle(document.querySelector('#queue td')).lineHeight);
  const cut = c => c.scrollWidth > c.clientWidth
    || c.getBoundingClientRect().right > box.getBoundingClientRect().right;
  return {
    rows: rows.length,
    tallest: Math.max(...rows.map(r => r.getBoundingClientRect().height)),
    line: line,
    stateCut: rows.filter(r => cut(r.lastElementChild)).length,  // the state column
    classCut: rows.filter(r => cut(r.firstElementChild)).length,  // the class column
    // the site, in its column or under the alarm, is never cut short
    siteCut: rows.filter(r => { const c = [...r.querySelectorAll('.c-site, .where')]
      .find(e => e.offsetParent !== null); return !c || cut(c); }).length,
    overflowX: box.scrollWidth - box.clientWidth,
    detailRight: document.querySelector('#detail').getBoundingClientRect().right,
    width: window.innerWidth,
  };
}"""


async def test_operator_reads_the_queue_banner_and_warnings_right(tmp_path):
    """30 open alarms at 1280x800 and 1024x768 (one line per row, nothing
    cut); a path alarm reads as a path; the banner leaves when its alarm is
    picked or acknowledged elsewhere; the detail pane follows the queue top
    until the operator picks one; a failing dispatch output is a warning on
    every page, with the failure as a sentence."""
    SHOTS = DOC_SHOTS if UPDATE_SHOTS else str(tmp_path / "screenshots")
    os.makedirs(SHOTS, exist_ok=True)
    async with console_receiver(tmp_path) as (rx, base, sink):
        # one row per alarm: this test reads 30 rows (no incidents grouped)
        rx.store.hygiene = Hygiene(grouping=GroupingPolicy(0))
        # 1004 (1 s heartbeat) never reports: its primary path fails; its
        # zone 1 is named "front door", which the path number must not borrow
        await wait_until(lambda: rx.supervisor.failed(), what="1004 supervision failure")
        mix = [(130, 3, 2), (137, 1, 1), (134, 1, 1), (110, 5, 1), (302, 0, 0), (144, 2, 1),
               (354, 2, 0), (133, 3, 2), (301, 0, 0), (132, 2, 1)]
        await deliver_many(rx, 1001, 1, mix + mix[:5])
        await deliver_many(rx, 1002, 1, [(130, 3, 1), (423, 1, 1), (137, 2, 1), (110, 2, 1),
                                         (426, 1, 1), (130, 2, 1), (144, 3, 1)])
        await deliver_many(rx, 1003, 1, [(137, 1, 1), (130, 2, 1), (144, 1, 1), (301, 0, 0),
                                         (130, 1, 1), (133, 2, 1), (302, 0, 0)])
        n_open = 1 + 15 + 7 + 7

        async with console_page(base, 1280, 800) as (page, problems, failed):
            await page.goto(base + "/login?next=/")
            await page.fill("#name", "olga")
            await page.fill("#password", PASSWORDS["olga"])
            await page.click("button[type=submit]")
            await expect(page.locator("#live")).to_have_text("live")
            rows = page.locator("#queue tbody tr[data-alarm-id]")
            await expect(rows).to_have_count(n_open)

            # the path failure: a path, never zone 1's name
            path_row = rows.filter(has_text="Residence Okafor")
            await expect(path_row).to_contain_text("primary path (1) silent for")
            await expect(path_row).not_to_contain_text("front door")
            await expect(rows.filter(has_text="Failure to communicate")).to_contain_text(
                "backup path (2)")

            # two lines per alarm at most: the alarm, and the site under it
            for w, h, name in ((1280, 800, "alarm-queue-1280x800"),
                               (1024, 768, "alarm-queue-1024x768")):
                await page.set_viewport_size({"width": w, "height": h})
                m = await page.evaluate(QUEUE_LAYOUT_JS)
                assert m["rows"] == n_open, m
                assert m["tallest"] < 2.9 * m["line"], m
                assert m["stateCut"] == 0 and m["classCut"] == 0, m
                assert m["siteCut"] == 0, m
                assert m["overflowX"] <= 0, m
                assert m["detailRight"] <= w, m  # the detail pane is on screen
                await page.screenshot(path=os.path.join(SHOTS, name + ".png"))

            # the detail pane follows the top of the queue ...
            detail = page.locator("#detail")
            top_id = await rows.first.get_attribute("data-alarm-id")
            await expect(detail).to_have_attribute("data-alarm-id", top_id)
            # ... so a new hold-up on top is shown there, with the banner
            await panel_event(rx, 1001, 16, 122, 4)
            banner = page.locator("#banner")
            await expect(banner).to_contain_text("NEW HOLD-UP ALARM")
            await expect(rows.first).to_contain_text("teller hold-up button")
            hold1 = await rows.first.get_attribute("data-alarm-id")
            await expect(detail).to_have_attribute("data-alarm-id", hold1)
            await expect(banner).to_have_attribute("data-alarm-id", hold1)
            await expect(page.locator("#audit li").first).to_contain_text(
                "Raised by the receiver and routed to Central Police Station "
                "(police station), District 1 Command (district command) and "
                "Municipal Emergency Centre (municipal centre).")
            assert "{" not in await page.locator("#audit").inner_text()
            # picking it (a click) puts the banner away
            await rows.first.click()
            await expect(banner).to_be_hidden()
            # another hold-up: a banner; the pane stays on the picked one
            await panel_event(rx, 1003, 8, 122, 1)
            await expect(banner).to_be_visible()
            hold2 = await banner.get_attribute("data-alarm-id")
            await expect(rows).to_have_count(n_open + 2)
            await expect(detail).to_have_attribute("data-alarm-id", hold1)
            # acknowledged on another console: the banner goes
            await rx.workflow.acknowledge(int(hold2), "sam")
            await expect(banner).to_be_hidden()
            await expect(page.locator(
                "#queue tr[data-alarm-id='%s'] .state" % hold2)).to_have_text("acknowledged")

            # a path alarm in the detail pane: "Path", not "Zone"
            await path_row.click()
            await expect(detail).to_contain_text("primary path (1)")
            await expect(detail.locator("dl")).not_to_contain_text("front door")
            await expect(detail.locator("dt", has_text="Path")).to_have_count(1)

            # the dispatch output fails while alarms are routed to it
            warnings = page.locator("#warnings")
            await expect(warnings).to_be_hidden()
            port = sink.port
            sink.ack = False  # drops the kept connection at the next message ...
            await sink.stop()  # ... and listens no more
            await panel_event(rx, 1002, 8, 130, 1)  # harbour: not routed
            await panel_event(rx, 1001, 17, 130, 1)  # central burglary: police-feed
            await expect(warnings).to_contain_text("police-feed", timeout=30_000)
            await expect(warnings).to_contain_text(
                "Output police-feed: 127.0.0.1:%d refused the connection (nothing is "
                "listening there)." % port)
            await page.screenshot(path=os.path.join(SHOTS, "output-warning.png"))
            await page.goto(base + "/dispatch")
            await expect(page.locator("#warnings")).to_contain_text("police-feed")
            await expect(page.locator("#outputs")).to_contain_text("FAILING")
            await expect(page.locator("#dispatch-alarms")).to_contain_text(
                "refused the connection (nothing is listening there).")
            assert "Errno" not in await page.locator("main").inner_text()
            # the far end is back: the warning goes by itself
            sink2 = JsonLinesSink(port=port)
            await sink2.start()
            try:
                await expect(page.locator("#warnings")).to_be_hidden(timeout=30_000)
                await expect(page.locator("#outputs")).to_contain_text("delivering")
            finally:
                await sink2.stop()
            assert problems == [] and failed == [], (problems, failed)
