"""The console's vehicle routes (receiver/web/tracks_api.py) over HTTP
against a real receiver: nothing without a session, writes only with the
CSRF token, each mistake a clear 4xx in words; the map's data; the CSP
with a configured tile server; the vendored Leaflet unchanged; the config
and CLI pieces an administrator writes ([vehicles], [map], accounts add
--site-position)."""

import hashlib
import os
import time

import pytest
from aiohttp import web

from firmware import REPO
from receiver import cli
from receiver.config import ConfigError, load
from receiver.records import Account, TrackRecord
from testkit.vehicle import position_record
from receiver.records import Position
from receiver.web import tracks_api
from receiver.web.console import CSP, content_security_policy
from receiver.web.testing import Client, console_receiver

VAN, PATROL, BANK, NOWHERE = "1003", "1004", "1001", "1009"


def accounts():
    def a(n, **kw):
        return Account(n, os.urandom(32), **kw)
    return [a(VAN, panel_kind="vehicle", site_name="Cash van 7"),
            a(PATROL, panel_kind="patrol", site_name="Patrol car 3"),
            a(BANK, panel_kind="bank", site_name="City Bank", site_lat=52.375, site_lon=4.898),
            a(NOWHERE, panel_kind="home", site_name="No coordinates")]


async def alarm(rx, account, code=122, position=None):
    out = await rx.ingest(dict(account=account, protocol="native", dedupe_key="k%s%d" % (
        account, code), seq=code, qualifier=1, code=code, zone=1, position=position))
    return out.alarm_id


async def test_every_vehicle_route_needs_a_session_and_writes_a_csrf_token(tmp_path):
    routes = tracks_api.add_routes(web.Application())
    assert all(perm is not None for _, _, perm in routes)
    async with console_receiver(tmp_path, accounts=accounts()) as (rx, base, _):
        aid = await alarm(rx, BANK)
        async with Client(base) as c:
            for method, path, _perm in routes:
                p = path.replace("{id}", str(aid)).replace("{account}", PATROL)
                async with c.request(method, p, json={}) as r:
                    if path.startswith("/api/"):
                        assert r.status == 401, (method, path, r.status)
                    else:
                        assert r.status == 302 and r.headers["Location"].startswith("/login")
            assert (await c.login("olga")).status == 200
            for method, path in (("POST", "/api/alarms/%d/dispatch" % aid),
                                 ("POST", "/api/patrols/%s/status" % PATROL)):
                async with c.request(method, path, json={"patrol": PATROL,
                                                         "status": "available"},
                                     csrf=False) as r:
                    assert r.status == 403 and "CSRF" in (await r.json())["error"]
            assert await rx.store.list_dispatches() == []
            assert await rx.store.patrol_statuses([PATROL]) == {}


async def test_the_vehicle_routes_say_what_is_wrong(tmp_path):
    async with console_receiver(tmp_path, accounts=accounts()) as (rx, base, _):
        aid = await alarm(rx, BANK)
        nowhere = await alarm(rx, NOWHERE)
        async with Client(base) as c:
            await c.login("olga")
            cases = [
                ("POST", "/api/alarms/%d/dispatch" % aid, {}, 400, "give the patrol's account"),
                ("POST", "/api/alarms/%d/dispatch" % aid, {"patrol": VAN}, 404,
                 "1003 is not a patrol car"),
                ("POST", "/api/alarms/999/dispatch", {"patrol": PATROL}, 404, "no such alarm"),
                ("POST", "/api/alarms/x/dispatch", {"patrol": PATROL}, 404, "no such alarm"),
                ("POST", "/api/alarms/%d/dispatch" % nowhere, {"patrol": PATROL}, 409,
                 "no position and its site has no coordinates"),
                ("POST", "/api/patrols/%s/status" % PATROL, {"status": "lunch"}, 400,
                 "status must be one of available, dispatched, on_scene"),
                ("POST", "/api/patrols/%s/status" % VAN, {"status": "available"}, 404,
                 "not a patrol car"),
                ("GET", "/api/tracks/%s?since=2026-01-05T10:00&until=2026-01-05T09:00" % VAN,
                 None, 400, "until must be after since"),
                ("GET", "/api/tracks/%s?since=yesterday" % VAN, None, 400,
                 "since: give Unix seconds or ISO 8601"),
                ("GET", "/api/tracks/%s?since=1&limit=0" % VAN, None, 400, "limit out of range"),
                ("GET", "/api/tracks/4242", None, 404, "no such account"),
                ("GET", "/api/alarms/999/patrols", None, 404, "no such alarm"),
            ]
            for method, path, body, status, words in cases:
                kw = {"json": body} if body is not None else {}
                got = await c.json(method, path, status=status, **kw)
                assert words in got["error"], (path, got)
            # twice the same patrol: refused, the first stands
            await c.json("POST", "/api/patrols/%s/status" % PATROL, json={"status": "available"})
            await c.json("POST", "/api/alarms/%d/dispatch" % aid, json={"patrol": PATROL})
            got = await c.json("POST", "/api/alarms/%d/dispatch" % aid,
                               json={"patrol": PATROL}, status=409)
            assert "already dispatched" in got["error"]
            assert len(await rx.store.list_dispatches()) == 1
            # the console audit log names who did it
            rows = await c.json("GET", "/api/audit", status=403)  # operators may not read it
            assert "may not" in rows["error"]
        async with Client(base) as c:
            await c.login("sam")
            rows = (await c.json("GET", "/api/audit"))["audit"]
            assert {(r["actor"], r["action"]) for r in rows} >= {
                ("olga", "patrol.dispatch"), ("olga", "patrol.status")}


async def test_the_maps_data(tmp_path):
    def configure(cfg):
        from receiver.vehicles import geofences
        cfg.vehicles.rules = geofences.load(REPO + "/examples/geofences.geojson")
    async with console_receiver(tmp_path, accounts=accounts(), configure=configure) as (
            rx, base, _):
        now = time.time()
        pos = Position(52.3705, 4.890, speed_kmh=0.0, fix_time=now - 5, valid=True,
                       ignition=True, moving=False, alarm=True)
        await rx.store.ingest_track([TrackRecord(VAN, "a", now - 4, pos)])
        aid = await alarm(rx, VAN, position=Position(52.3705, 4.890, fix_time=now - 2,
                                                     valid=True, alarm=True))
        bid = await alarm(rx, BANK, code=130)
        await alarm(rx, NOWHERE, code=130)
        # the van drives on, then its crew's duress code arrives without a
        # fix: the alarm is where the van was last known
        moved = Position(52.3712, 4.8931, speed_kmh=30.0, fix_time=now - 1, valid=True,
                         ignition=True, moving=True)
        await rx.store.ingest_track([TrackRecord(VAN, "b", now - 1, moved)])
        did = await alarm(rx, VAN, code=121)
        async with Client(base) as c:
            await c.login("olga")
            cfg = await c.json("GET", "/api/map/config")
            assert cfg == {"tile_url": None, "tile_attribution": "", "tile_max_zoom": 19,
                           "districts": "/api/map/districts", "distance": "straight line"}
            async with c.request("GET", "/api/map/districts") as r:
                assert r.status == 200 and r.headers["Content-Type"] == "application/geo+json"
                d = await r.json(content_type=None)
                assert d["type"] == "FeatureCollection"
            u = await c.json("GET", "/api/map/units")
            van = [v for v in u["vehicles"] if v["account"] == VAN][0]
            assert van["last"]["position"]["lat"] == 52.3712 and van["kind"] == "vehicle"
            assert [a["id"] for a in van["open_alarms"]] == [aid, did]
            assert [s["account"] for s in u["sites"]] == [BANK]
            places = {a["id"]: a["where"] for a in u["alarms"]}
            assert places[aid]["source"] == "alarm position" and places[aid]["lat"] == 52.3705
            assert places[bid] == {"lat": 52.375, "lon": 4.898, "radius_m": 150,
                                   "source": "site"}
            assert places[did] == {"lat": 52.3712, "lon": 4.8931, "radius_m": 150,
                                   "source": "vehicle's last known position", "at": now - 1}
            assert len(places) == 4 and sum(1 for v in places.values() if v is None) == 1
            assert [s["kind"] for s in u["shapes"][VAN]] == ["allowed", "allowed", "corridor"]
            props = await c.json("GET", "/api/alarms/%d/patrols" % did)
            assert props["target"] == places[did] and props["why_none"] is None
            tr = await c.json("GET", "/api/tracks/%s" % VAN)
            assert [p["source"] for p in tr["points"]] == ["position", "event", "position"]
            tr = await c.json("GET", "/api/tracks/%s?since=%d&until=%d" % (VAN, now - 10,
                                                                           now - 3))
            assert [p["source"] for p in tr["points"]] == ["position"]
            props = await c.json("GET", "/api/alarms/%d/patrols" % bid)
            assert props["proposals"] == [] and props["available"] == 0
            assert props["target"]["source"] == "site"


def test_csp_names_the_tile_server_and_nothing_else():
    assert content_security_policy(None) == CSP
    with_tiles = content_security_policy("https://tiles.example.net")
    assert "img-src 'self' data: https://tiles.example.net;" in with_tiles
    assert with_tiles.replace(" https://tiles.example.net", "") == CSP


async def test_a_configured_tile_server_is_in_the_consoles_csp(tmp_path):
    def configure(cfg):
        cfg.map.tile_url = "https://tiles.example.net:8443/osm/{z}/{x}/{y}.png"
    async with console_receiver(tmp_path, accounts=accounts(), configure=configure) as (
            rx, base, _):
        async with Client(base) as c:
            async with c.request("GET", "/login") as r:
                csp = r.headers["Content-Security-Policy"]
            assert "img-src 'self' data: https://tiles.example.net:8443;" in csp
            assert "script-src 'self';" in csp and "connect-src 'self';" in csp


@pytest.mark.parametrize("toml, words", [
    ('[map]\ntile_url = "ftp://tiles/{z}/{x}/{y}"', "http(s) URL"),
    ('[map]\ntile_url = "https://tiles.example.net/{z}/{x}.png"', "{z}, {x} and {y}"),
    ("[map]\ntile_url = \"https://t.example.net/{z}/{x}/{y}.png'; script-src *\"",
     "must not contain"),
    ('[map]\ndistricts = "nowhere.geojson"', "no such file"),
    ("[map]\ntile_max_zoom = 30", "1..22"),
    ("[map]\ncolour = 1", "unknown key"),
    ('[vehicles]\ngeofences = "gf.geojson"', "no such file"),
    ('[vehicles]\ngeofences = "bad.geojson"', "radius_m: expected whole metres"),
    ("[vehicles]\nsilent_min = -1", "silent_min must be an integer >= 0"),
    ("[vehicles]\nretention_days = 0", "retention_days must be an integer >= 1"),
    ("[vehicles]\narrival_radius_m = 9000", "10..5000"),
    ("[vehicles]\nunit_grace_s = 601", "0..600"),
])
def test_vehicle_and_map_config_mistakes(tmp_path, toml, words):
    (tmp_path / "bad.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
        '{"account": "1", "kind": "allowed", "radius_m": 5}, "geometry": {"type": "Point", '
        '"coordinates": [4.88, 52.37]}}]}')
    p = tmp_path / "receiver.toml"
    p.write_text(toml + "\n")
    with pytest.raises(ConfigError) as e:
        load(str(p))
    assert words in str(e.value)


def test_the_example_vehicle_config_loads(tmp_path):
    p = tmp_path / "receiver.toml"
    p.write_text('[vehicles]\ngeofences = "%s/examples/geofences.geojson"\nsilent_min = 0\n'
                 '[map]\ntile_url = "https://tile.example.org/{z}/{x}/{y}.png"\n' % REPO)
    cfg = load(str(p))
    assert sorted(cfg.vehicles.rules) == ["1003"] and cfg.vehicles.silent_s is None
    assert cfg.map.tile_origin == "https://tile.example.org"


def test_accounts_add_takes_the_site_position(tmp_path, capsys):
    db = str(tmp_path / "rx.db")
    assert cli.main(["--db", db, "accounts", "add", "1001", "--site", "City Bank",
                     "--site-position", "52.3750,4.8980", "--arrival-radius", "80",
                     "--track-retention-days", "30"]) == 0
    assert cli.main(["--db", db, "accounts", "show", "1001"]) == 0
    out = capsys.readouterr().out
    assert '"site_lat": 52.375' in out and '"site_lon": 4.898' in out
    assert '"site_radius_m": 80' in out and '"track_retention_days": 30' in out


def test_leaflet_is_the_npm_package_unchanged():
    d = REPO + "/receiver/web/static/vendor/leaflet/"
    readme = open(d + "README.md").read()
    assert "**1.9.4**" in readme
    lic = open(d + "LICENSE").read()
    assert lic.startswith("BSD 2-Clause License") and "Volodymyr Agafonkin" in lic
    for line in readme.split("```")[1].strip().splitlines():
        digest, name = line.split()
        assert hashlib.sha256(open(d + name, "rb").read()).hexdigest() == digest, name
    assert 't.version="1.9.4"' in open(d + "leaflet.js").read()


def test_position_record_is_what_the_codec_takes():
    from protocol.lean import glwire as w
    r = position_record(52.3705, 4.89, 42.5, 359.96, 1_767_600_000, valid=True)
    assert w.decode_payload(w.MSG_POSITION, w.encode_payload({
        "type": w.MSG_POSITION, "reason": 2, "position": r}))["position"] == r
