"""The console's vehicle routes (issue 19): the map page, what it draws,
track replay, patrol proposals, dispatch and a patrol's status.
docs/console.md ("Map") and docs/mobile.md ("The map") are the reference.

| route | permission | what |
| --- | --- | --- |
| ``GET /map`` | view | the map page |
| ``GET /api/map/config`` | view | tile URL, attribution, zoom; where the base layer is |
| ``GET /api/map/districts`` | view | the offline base layer (GeoJSON) |
| ``GET /api/map/units`` | view | vans, patrols, sites, open alarms with their place, corridors |
| ``GET /api/tracks/{account}`` | view | ``?since&until&limit``: track points for a replay; without a range, the last ones |
| ``GET /api/alarms/{id}/patrols`` | view | where the alarm is, the nearest available patrols (straight line), dispatches |
| ``POST /api/alarms/{id}/dispatch`` | alarm.act | ``{"patrol": "1004"}``: dispatch it (audited) |
| ``POST /api/patrols/{account}/status`` | alarm.act | ``{"status": "available"}`` (audited) |

Every handler goes through receiver.web.api's wrappers (session, role,
CSRF and Origin for writes); state changes go through
receiver.vehicles.service and are written to the console audit log.
"""

from __future__ import annotations

import os
import time

from aiohttp import web

from receiver.store import TRACK_MAX_PAGE
from receiver.vehicles.service import VehicleError
from receiver.web import auth
from receiver.web.api import (api, error_response, int_param, json_response, page,
                              parse_time, read_body, route_adder)


@api(auth.VIEW)
async def map_config(request, console, s):
    m = console.receiver.config.map
    return json_response({"tile_url": m.tile_url or None,
                          "tile_attribution": m.tile_attribution,
                          "tile_max_zoom": m.tile_max_zoom,
                          "districts": "/api/map/districts",
                          "distance": "straight line"})


@api(auth.VIEW)
async def districts(request, console, s):
    path = console.receiver.config.map.districts
    if not os.path.isfile(path):
        return error_response(404, "the districts layer %s is not there" % path)
    return web.FileResponse(path, headers={"Content-Type": "application/geo+json"})


@api(auth.VIEW)
async def units(request, console, s):
    return json_response(await console.receiver.vehicles.units(time.time()))


@api(auth.VIEW)
async def track(request, console, s):
    rx = console.receiver
    number = request.match_info["account"]
    if rx.account(number) is None and await rx.store.get_account(number) is None:
        return error_response(404, "no such account")
    since = parse_time(request.query.get("since"), "since")
    until = parse_time(request.query.get("until"), "until")
    limit = int_param(request, "limit", 5000, 1, TRACK_MAX_PAGE)
    if since is not None and until is not None and until <= since:
        return error_response(400, "until must be after since")
    if since is None and until is None:
        points = await rx.vehicles.last_points(number)
    else:
        points = await rx.vehicles.track(number, since, until, limit)
    return json_response({"account": number, "since": since, "until": until,
                          "points": [p.to_json() for p in points],
                          "more": len(points) == limit})


def _alarm_id(request) -> int | None:
    try:
        return int(request.match_info["id"])
    except ValueError:
        return None


@api(auth.VIEW)
async def proposals(request, console, s):
    alarm_id = _alarm_id(request)
    if alarm_id is None:
        return error_response(404, "no such alarm")
    try:
        return json_response(await console.receiver.vehicles.proposals(alarm_id, time.time()))
    except VehicleError as e:
        return error_response(e.status, str(e))


@api(auth.ALARM_ACT, write=True)
async def dispatch(request, console, s):
    alarm_id = _alarm_id(request)
    if alarm_id is None:
        return error_response(404, "no such alarm")
    body = await read_body(request)
    patrol = body.get("patrol")
    if not isinstance(patrol, str) or not patrol:
        return error_response(400, "give the patrol's account number as \"patrol\"")
    try:
        d = await console.receiver.vehicles.dispatch(alarm_id, patrol, s.user, time.time())
    except VehicleError as e:
        return error_response(e.status, str(e))
    await console.users.record(s.user, "patrol.dispatch", "alarm=%d patrol=%s" % (
        alarm_id, patrol), request.remote or "")
    return json_response({"dispatch": d.to_json()})


@api(auth.ALARM_ACT, write=True)
async def patrol_status(request, console, s):
    number = request.match_info["account"]
    body = await read_body(request)
    try:
        st = await console.receiver.vehicles.set_status(number, body.get("status"), s.user,
                                                        time.time())
    except VehicleError as e:
        return error_response(e.status, str(e))
    await console.users.record(s.user, "patrol.status", "patrol=%s status=%s" % (
        number, st.status), request.remote or "")
    return json_response({"status": st.to_json()})


def add_routes(app: web.Application) -> list[tuple[str, str, str | None]]:
    """Add the vehicle routes; [(method, path, permission)] as
    receiver.web.api.add_routes gives them."""
    routes: list = []
    add = route_adder(app, routes)

    add("GET", "/map", page(auth.VIEW, "map.html"))
    add("GET", "/api/map/config", map_config)
    add("GET", "/api/map/districts", districts)
    add("GET", "/api/map/units", units)
    add("GET", "/api/tracks/{account}", track)
    add("GET", "/api/alarms/{id}/patrols", proposals)
    add("POST", "/api/alarms/{id}/dispatch", dispatch)
    add("POST", "/api/patrols/{account}/status", patrol_status)
    return routes
