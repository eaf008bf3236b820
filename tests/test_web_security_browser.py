"""The console's security fixes as a browser sees them (headless Chromium,
Playwright, real receiver): ``/login?next=`` cannot send the browser to
another site, and the alarm queue shows its alarms even when the server
refuses it a live stream (issue 14).  The HTTP-client halves are in
tests/test_web_security.py."""

import os

from receiver.web import auth
from receiver.web.testing import PASSWORDS, Client, console_receiver, demo_accounts
from tests.test_web_browser import (CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS,  # noqa: F401
                                    async_api, expect, panel_event, pytestmark)
from tests.test_web_security import open_stream


async def new_page(browser):
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(UI_TIMEOUT_MS)
    return await ctx.new_page()


async def login(page, base, path):
    await page.goto(base + path)
    await page.fill("#name", "olga")
    await page.fill("#password", PASSWORDS["olga"])
    await page.click("button[type=submit]")


async def test_login_next_cannot_leave_the_console(tmp_path):
    # Seen: /login?next=/%09/host (also %0a, %0d) sent the browser to
    # http://host/ after a good login: the page's check saw "/\t/host",
    # the browser's URL parser dropped the tab and read "//host".
    async with console_receiver(tmp_path) as (rx, base, _):
        async with async_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for attack in ("/%09/evil.invalid", "/%0a/evil.invalid", "/%0d/evil.invalid",
                               "/%09/%09evil.invalid/x", "%2F%2Fevil.invalid",
                               "/%5Cevil.invalid"):
                    page = await new_page(browser)
                    await login(page, base, "/login?next=" + attack)
                    await expect(page).to_have_url(base + "/")
                    await expect(page.locator("#who")).to_have_text("olga (operator)")
                    await page.context.close()
                page = await new_page(browser)  # where she was going, on this console
                await login(page, base, "/login?next=/panels%3Ffilter%3Dtrouble")
                await expect(page).to_have_url(base + "/panels?filter=trouble")
            finally:
                await browser.close()


async def test_queue_shows_its_alarms_when_the_live_stream_is_refused(tmp_path):
    # Seen: with the streams taken, every other console showed an empty
    # queue ("reconnecting…") because the page loaded its data only once
    # the stream was open.  Now the data comes first over the API; a
    # refused stream says so and the page polls until a slot frees.
    shots = str(tmp_path / "screenshots")
    os.makedirs(shots, exist_ok=True)
    accounts = demo_accounts()
    del accounts[1004]  # supervised every second: its path failure would be a third alarm
    async with console_receiver(tmp_path, accounts) as (rx, base, _):
        await panel_event(rx, 1002, 1, 130, 3)  # the jeweller's safe: burglary
        holders, streams = [], []
        try:
            for _ in range(auth.MAX_STREAMS_PER_USER // auth.MAX_STREAMS_PER_SESSION):
                c = Client(base)
                holders.append(c)
                assert (await c.login("olga")).status == 200
                for _ in range(auth.MAX_STREAMS_PER_SESSION):
                    r = await open_stream(c)
                    assert r.status == 200
                    streams.append(r)
            async with async_api.async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_ARGS)
                try:
                    page = await new_page(browser)
                    await login(page, base, "/login?next=/")
                    await expect(page).to_have_url(base + "/")
                    rows = page.locator("#queue tbody tr[data-alarm-id]")
                    await expect(rows).to_have_count(1)
                    await expect(rows.first).to_contain_text("Lindqvist Jewellers")
                    await expect(page.locator("#live")).to_contain_text(
                        "not live: too many console pages open")
                    await page.screenshot(path=os.path.join(shots, "queue-not-live.png"))
                    # A hold-up while the page is not live: the poll brings it.
                    await panel_event(rx, 1001, 1, 122, 4)
                    await expect(rows).to_have_count(2)
                    await expect(rows.first).to_contain_text("Hold-up")
                    # Another page closes: this one gets its live stream back.
                    streams.pop().close()
                    await expect(page.locator("#live")).to_have_text("live")
                    await page.screenshot(path=os.path.join(shots, "queue-live-again.png"))
                finally:
                    await browser.close()
        finally:
            for r in streams:
                r.close()
            for c in holders:
                await c.http.close()
