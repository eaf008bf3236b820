"""The console's map in a real headless Chromium against a real receiver
(issue 19): a cash van driving examples/route_city.gpx (real POSITION
frames from the in-process protocol panel, its points chosen by the
firmware's report policy over the simulator's GPS replay) leaves its
corridor; the receiver's own 170 and then the van's hold-up flash on the
map where the van was; the nearest available patrol is proposed (the
nearer of two, straight line), dispatched from the console, drives there
and is recorded on scene with its time to arrive in the alarm's audit;
the van's panel shows its last positions and replays its track; the
alarm detail shows the place on a small map.  No tile server: the
districts layer alone (the map works offline), Leaflet from the receiver.
Screenshots go to docs/screenshots/ with GUARDLINE_UPDATE_SCREENSHOTS=1.
"""

import os
import re
import time

import pytest

from firmware import REPO
from receiver.records import Account
from testkit.session_panel import SessionPanel
from testkit.vehicle import RouteDrive, event_msg_at, position_msg, position_record
from testkit.wait import wait_until
from receiver.vehicles import geofences
from receiver.vehicles.patrols import distance_m, elapsed_text
from receiver.web.testing import PASSWORDS, console_receiver
from tests.test_geo import plane_distance
from tests.test_web_browser import (CHROMIUM, DOC_SHOTS, UPDATE_SHOTS, async_api,  # noqa: F401
                                    console_page, expect)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed at %s" % CHROMIUM)

VAN, NEAR, FAR, BANK = "1003", "1004", "1005", "1001"
STATION = (52.3760, 4.8870)  # patrol 1004 waits here (the Canal Ring station)
FAR_AWAY = (52.3790, 4.9040)  # patrol 1005


def accounts():
    def a(n, **kw):
        return Account(n, os.urandom(32), region="central", **kw)
    return [a(VAN, panel_kind="vehicle", site_name="Cash van 7", zones={"6": "hold-up button"}),
            a(NEAR, panel_kind="patrol", site_name="Patrol car 3"),
            a(FAR, panel_kind="patrol", site_name="Patrol car 9"),
            a(BANK, panel_kind="bank", site_name="City Bank, Canal Street",
              site_address="2 Canal Street", site_lat=52.3750, site_lon=4.8980,
              site_radius_m=80, zones={"4": "teller hold-up button"})]


def configure(cfg):
    cfg.vehicles.rules = geofences.load(REPO + "/examples/geofences.geojson")
    cfg.vehicles.unit_grace_s = 5


async def panel(rx, account):
    host, port = rx.addresses["tcp"][0]
    p = SessionPanel(int(account), rx.account(account).key, host, port)
    await p.connect()
    return p


async def login(page, base, who="olga", next_path="/map"):
    await page.goto(base + next_path)
    await page.fill("#name", who)
    await page.fill("#password", PASSWORDS[who])
    await page.click("button[type=submit]")
    await expect(page).to_have_url(base + next_path)


async def marker_latlng(page, layer, selector_attr, value):
    """The Leaflet position of the marker whose element has the attribute."""
    return await page.evaluate("""([layer, attr, value]) => {
        for (const m of M.layers[layer].getLayers()) {
            const el = m.getElement && m.getElement();
            if (el && el.querySelector('[' + attr + '="' + value + '"]')) {
                const ll = m.getLatLng(); return [ll.lat, ll.lng];
            }
        }
        return null; }""", [layer, selector_attr, value])


async def test_van_leaves_its_corridor_holdup_patrol_dispatched_and_on_scene(tmp_path):
    shots = DOC_SHOTS if UPDATE_SHOTS else str(tmp_path / "screenshots")
    os.makedirs(shots, exist_ok=True)
    async with console_receiver(tmp_path, accounts=accounts(), configure=configure) as (
            rx, base, _):
        now = time.time()
        van = await panel(rx, VAN)
        near, far = await panel(rx, NEAR), await panel(rx, FAR)
        seq = {VAN: 0, NEAR: 0, FAR: 0}

        async def send(p, account, msg):
            seq[account] += 1
            await p.deliver(seq[account], msg)

        # the patrols are on duty at their places
        for p, acct, (lat, lon) in ((near, NEAR, STATION), (far, FAR, FAR_AWAY)):
            await send(p, acct, event_msg_at(470, 2, None, event_time=now - 200))
            await send(p, acct, position_msg(position_record(lat, lon, 0, 0, now - 150,
                                                             ignition=False), 8))

        async with console_page(base, 1440, 900) as (page, problems, failed):
            await login(page, base)
            await expect(page.locator("#live")).to_have_text("live")
            await expect(page.locator(".unit[data-account='%s']" % NEAR)).to_be_visible()
            # the offline base layer: the made-up city's districts, no tiles
            await expect(page.locator(".leaflet-tooltip.map-label.district")).to_have_count(6)
            assert await page.locator(".leaflet-tile").count() == 0

            # the van drives from the depot, past its corridor's turn, and
            # stops at the red light on Market Avenue: 130 s of route time,
            # sent as the unit's report policy sends them
            drive = RouteDrive(REPO + "/examples/route_city.gpx", start=now - 140,
                               until_s=130)
            for _, msg in drive.messages():
                await send(van, VAN, msg)
            vmark = page.locator(".unit[data-account='%s']" % VAN)
            await expect(vmark).to_be_visible()

            # the receiver's own check: left its route corridor (170)
            async def raised():
                return [e for e in await rx.store.list_events(account=VAN)
                        if e.source == "vehicle" and e.code == 170]
            [exit_ev] = await wait_until(raised, what="the receiver's 170")
            where = exit_ev.position
            line = geofences.load(REPO + "/examples/geofences.geojson")[VAN].section[
                "corridor"]["line"]
            assert plane_distance(line, round(where.lat * 1e6), round(where.lon * 1e6)) > 100
            exit_alarm = [a for a in await rx.store.list_alarms() if a.code == 170][0]
            flash = page.locator(".alarm-marker[data-alarm-id='%d']" % exit_alarm.id)
            await expect(flash).to_be_visible()
            assert await marker_latlng(page, "alarms", "data-alarm-id", exit_alarm.id) == [
                pytest.approx(where.lat, abs=1e-9), pytest.approx(where.lon, abs=1e-9)]
            assert "alarm-flash" in await flash.get_attribute("class")

            # hold-up at the red light: the event carries where the van is
            held = drive.fix_at(130, alarm=True)
            await send(van, VAN, event_msg_at(122, 6, held, event_time=now - 10))
            hold = await wait_until(lambda: _alarm(rx, 122), what="the hold-up alarm")
            hflash = page.locator(".alarm-marker[data-alarm-id='%d']" % hold.id)
            await expect(hflash).to_be_visible()
            assert await marker_latlng(page, "alarms", "data-alarm-id", hold.id) == [
                pytest.approx(held["lat"] / 1e6), pytest.approx(held["lon"] / 1e6)]
            await page.screenshot(path=os.path.join(shots, "map-holdup.png"))

            # the van: last positions, speed, state, open alarms
            await vmark.click()
            panel_ = page.locator("#unit-panel")
            await expect(panel_.locator("#unit-title")).to_have_text("Cash van 7")
            await expect(panel_.locator("#last-positions tbody tr")).to_have_count(7)
            await expect(panel_.locator("#unit-alarms li")).to_have_count(2)
            await expect(panel_).to_contain_text("Silent hold-up")
            await expect(panel_.locator("#unit-speed")).to_have_text("0 km/h")

            # the hold-up: the nearer patrol first, by straight-line distance
            await hflash.click()
            props = page.locator("#alarm-panel #proposals li")
            await expect(props).to_have_count(2)
            d_near = distance_m(STATION, (held["lat"] / 1e6, held["lon"] / 1e6))
            d_far = distance_m(FAR_AWAY, (held["lat"] / 1e6, held["lon"] / 1e6))
            assert d_near < d_far
            await expect(props.first).to_have_attribute("data-patrol", NEAR)
            await expect(props.first).to_contain_text("%d m away in a straight line"
                                                      % round(d_near))
            await expect(page.locator("#alarm-panel")).to_contain_text(
                "measured in a straight line (not by road)")
            await page.screenshot(path=os.path.join(shots, "map-proposal.png"))
            await props.first.locator("button.dispatch").click()
            await expect(page.locator("#alarm-panel #dispatches li")).to_contain_text(
                "dispatched by olga")
            await expect(page.locator(".unit.patrol.dispatched[data-account='%s']"
                                      % NEAR)).to_be_visible()
            [d] = await rx.store.list_dispatches(alarm_id=hold.id)
            assert (d.patrol, d.dispatched_by, d.arrived_at) == (NEAR, "olga", None)

            # the patrol drives over: half way, then within the radius (its
            # fixes stamped from the dispatch on: the time to arrive is from
            # the dispatch to the first fix on scene)
            t = d.dispatched_at
            mid = ((STATION[0] + held["lat"] / 1e6) / 2, (STATION[1] + held["lon"] / 1e6) / 2)
            await send(near, NEAR, position_msg(position_record(mid[0], mid[1], 40, 120, t + 1)))
            await send(near, NEAR, position_msg(position_record(
                held["lat"] / 1e6 + 0.0003, held["lon"] / 1e6, 8, 180, t + 40)))
            async def arrived():
                [x] = await rx.store.list_dispatches(alarm_id=hold.id)
                return x if x.arrived_at is not None else None
            done = await wait_until(arrived, what="the patrol on scene")
            assert done.arrived_at == int(t + 40)  # its first fix inside the radius
            took = elapsed_text(done.arrival_s)
            assert took in ("40 s", "39 s")  # the fix time is whole seconds
            await expect(page.locator("#alarm-panel #dispatches li")).to_contain_text(
                "on scene after " + took)
            await expect(page.locator(".unit.patrol.on_scene[data-account='%s']"
                                      % NEAR)).to_be_visible()
            await page.screenshot(path=os.path.join(shots, "map-on-scene.png"))

            # the patrol on scene stands on the van: the list picks either
            await expect(page.locator("#unit-list button[data-account='%s']" % NEAR)
                         ).to_have_text("Patrol car 3 (1004), on scene")
            await expect(page.locator("#alarm-list button")).to_have_count(2)
            await page.click("#unit-list button[data-account='%s']" % VAN)
            await expect(panel_.locator("#unit-title")).to_have_text("Cash van 7")

            # the van's track replay over the last minutes
            await page.click("#replay")
            await expect(page.locator("#replay-status")).to_have_attribute("data-done", "true")
            await expect(page.locator("#replay-status")).to_contain_text("of 7 positions")
            assert await page.locator("path.replay").count() == 1
            await page.screenshot(path=os.path.join(shots, "map-replay.png"))

            # the alarm detail: its place on a small map, the audit with the
            # time to arrive
            await page.goto(base + "/#alarm-%d" % hold.id)
            detail = page.locator("#detail")
            await expect(detail).to_have_attribute("data-alarm-id", str(hold.id))
            await expect(detail.locator("#alarm-map .leaflet-interactive")).to_have_count(1)
            await expect(detail.locator("#location")).to_contain_text("open map")
            await expect(detail.locator("#audit")).to_contain_text(
                "Patrol 1004 (Patrol car 3) dispatched by olga to the alarm's position")
            await expect(detail.locator("#audit")).to_contain_text(
                "Patrol 1004 (Patrol car 3) on scene %s after dispatch (within 150 m)." % took)
            await expect(detail.locator("#dispatches")).to_contain_text("on scene after " + took)
            await page.screenshot(path=os.path.join(shots, "alarm-small-map.png"))

            # the crew's duress code at the keypad, no fix in the event: the
            # alarm is where the van was last known, in the detail (words
            # and small map), in the proposal and on the map
            await send(van, VAN, event_msg_at(121, 1, None, event_time=now - 2))
            duress = await wait_until(lambda: _alarm(rx, 121), what="the duress alarm")
            last = (await rx.store.last_positions([VAN]))[VAN].position
            await page.goto(base + "/map")
            dflash = page.locator(".alarm-marker[data-alarm-id='%d']" % duress.id)
            await expect(dflash).to_be_visible()
            assert await marker_latlng(page, "alarms", "data-alarm-id", duress.id) == [
                pytest.approx(last.lat, abs=1e-9), pytest.approx(last.lon, abs=1e-9)]
            await page.goto(base + "/#alarm-%d" % duress.id)
            await expect(detail).to_have_attribute("data-alarm-id", str(duress.id))
            await expect(detail.locator("#last-known")).to_contain_text(
                "Last known position: %.5f, %.5f" % (last.lat, last.lon))
            await expect(detail.locator("#last-known")).to_contain_text(
                "the alarm's event carried none")
            await expect(detail.locator("#alarm-map .leaflet-interactive")).to_have_count(1)
            await expect(detail.locator("#patrols")).to_contain_text(
                "Nearest available patrols to the vehicle's last known position")
            await expect(detail.locator("#proposals li")).to_have_count(1)  # 1004 is on scene
            await page.screenshot(path=os.path.join(shots, "alarm-last-known.png"))

            assert problems == [], problems
            assert [f for f in failed if not f[1].startswith("/api/stream")] == [], failed
        for p in (van, near, far):
            await p.close()


async def _alarm(rx, code):
    for a in await rx.store.list_alarms():
        if a.code == code:
            return a
    return None


def test_the_map_page_loads_leaflet_from_the_receiver_only():
    html = open(REPO + "/receiver/web/static/map.html").read()
    srcs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(s.startswith("/static/") or s.startswith("#") or s.startswith("data:")
               for s in srcs), srcs
    assert "/static/vendor/leaflet/leaflet.js" in srcs
