"""What the console asks of the receiver about vehicle units: what the map
shows, which patrols to propose for an alarm, dispatching one, setting a
patrol's status.  Reads go through the store (so every receiver of a
cluster answers the same); writes go through the store's transactions,
each with its audit row, and are published to every console.

    svc = VehicleService(rx)
    await svc.units(now)                      # vans, patrols, sites, open alarms
    await svc.proposals(alarm_id, now)        # where the alarm is, nearest patrols
    await svc.dispatch(alarm_id, "1004", "olga", now)
    await svc.set_status("1004", "available", "olga", now)
"""

from __future__ import annotations

from typing import Protocol

from receiver import alarms as _alarms
from receiver.config import Config
from receiver.messages import ConsoleMessage, PatrolUpdate
from receiver.records import PATROL_STATUSES, Account, Alarm, Dispatch, PatrolStatus, Position
from receiver.store import Store
from receiver.vehicles import patrols as P
from receiver.vehicles.loop import VEHICLE_KINDS, VehicleLoop

# Track points shown for a van when it is clicked.
LAST_POINTS = 20


class VehicleError(Exception):
    """A request the operator must change (the message says how); ``status``
    is the HTTP status the console answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ServiceHost(Protocol):
    config: Config
    store: Store
    vehicle_loop: VehicleLoop

    def account(self, number: str) -> Account | None: ...

    def publish(self, message: ConsoleMessage, broadcast: bool = True) -> None: ...


def _open(alarms: list[Alarm]) -> dict[str, list[Alarm]]:
    by: dict[str, list[Alarm]] = {}
    for a in alarms:
        if a.state != _alarms.RESOLVED:
            by.setdefault(a.account, []).append(a)
    return by


def _alarm_brief(a: Alarm) -> dict:
    return {"id": a.id, "event_class": a.event_class, "priority": a.priority,
            "description": a.description, "state": a.state, "created_at": a.created_at}


class VehicleService:
    def __init__(self, rx: ServiceHost):
        self.rx = rx

    async def _open_alarms(self) -> list[Alarm]:
        out = []
        for st in (_alarms.PENDING, _alarms.ACKNOWLEDGED):
            out += await self.rx.store.list_alarms(st, limit=10_000)
        return out

    async def units(self, now: float) -> dict:
        """Everything the map draws: vehicle units (last position, speed,
        state, open alarms; patrols with their status) and fixed sites with
        coordinates (open alarms), each alarm with where it is."""
        store = self.rx.store
        accounts = await store.list_accounts()
        vehicles = [a for a in accounts if a.panel_kind in VEHICLE_KINDS]
        last = await store.last_positions([a.number for a in vehicles])
        statuses = await store.patrol_statuses([a.number for a in vehicles
                                                if a.panel_kind == "patrol"])
        open_alarms = await self._open_alarms()
        by = _open(open_alarms)
        watches = self.rx.vehicle_loop.watches
        out_v = []
        for a in vehicles:
            tp = last.get(a.number)
            st = statuses.get(a.number)
            w = watches.get(a.number)
            out_v.append({
                "account": a.number, "name": a.site_name, "kind": a.panel_kind,
                "last": tp.to_json() if tp else None,
                "age_s": None if tp is None else max(0.0, now - tp.at),
                "status": st.status if st else None,
                "status_text": P.status_words(st.status if st else None),
                "status_by": st.actor if st else None, "status_at": st.at if st else None,
                "checks": w.state() if w is not None else None,
                "open_alarms": [_alarm_brief(x) for x in by.get(a.number, [])]})
        sites = [{"account": a.number, "name": a.site_name, "address": a.site_address,
                  "lat": a.site_lat, "lon": a.site_lon,
                  "radius_m": a.site_radius_m or self.rx.config.vehicles.arrival_radius_m,
                  "open_alarms": [_alarm_brief(x) for x in by.get(a.number, [])]}
                 for a in accounts if a.site_position is not None
                 and a.panel_kind not in VEHICLE_KINDS]
        return {"vehicles": out_v, "sites": sites,
                "alarms": await self._alarm_places(open_alarms, {a.number: a for a in accounts},
                                                   last),
                "shapes": {acct: [s.to_json() for s in r.shapes]
                           for acct, r in self.rx.config.vehicles.rules.items()}}

    async def _alarm_places(self, alarms, accounts, last) -> list[dict]:
        """Each open alarm with where it is (its event's position, else a
        vehicle's last known position, else its site; None: nowhere
        known)."""
        out = []
        for a in alarms:
            acct = accounts.get(a.account)
            t = await self._target(a, acct, last)
            out.append(dict(_alarm_brief(a), account=a.account,
                            site_name=acct.site_name if acct else "",
                            where=t.to_json() if t else None))
        return out

    async def _target(self, alarm: Alarm, acct: Account | None,
                      last: dict | None = None) -> P.Target | None:
        """Where ``alarm`` is (patrols.target_of); ``last``: the vehicles'
        newest track points when the caller has them."""
        ev = await self.rx.store.list_events(after_id=alarm.event_id - 1, limit=1)
        pos = ev[0].position if ev and ev[0].id == alarm.event_id else None
        return await self._place(pos, acct, last)

    async def where_forwarded(self, message: dict) -> dict | None:
        """Where a routed alarm (an outbox message, receiver.app: its
        account, its event's position) is, at delivery: the same rule as
        the map and the patrol proposal (patrols.target_of), so a van's
        hold-up sent without a fix reaches the dispatch centre with the
        van's last known position, said as such, and its time."""
        t = await self._place(Position.from_json(message.get("position")),
                              self.rx.account(str(message.get("account"))))
        return t.to_json() if t else None

    async def _place(self, pos: Position | None, acct: Account | None,
                     last: dict | None = None) -> P.Target | None:
        """patrols.target_of for an alarm whose event carried ``pos``: a
        vehicle unit's newest track point (from ``last`` when the caller
        has them) is read only when the event had no position."""
        tp = None
        if pos is None and acct is not None and acct.panel_kind in VEHICLE_KINDS:
            if last is None:
                last = await self.rx.store.last_positions([acct.number])
            tp = last.get(acct.number)
        return P.target_of(pos, acct.site_position if acct else None,
                           acct.site_radius_m if acct else None,
                           self.rx.config.vehicles.arrival_radius_m, tp)

    async def _alarm(self, alarm_id: int) -> tuple[Alarm, Account | None]:
        a = await self.rx.store.get_alarm(alarm_id)
        if a is None:
            raise VehicleError("no such alarm", 404)
        return a, await self.rx.store.get_account(a.account)

    async def _patrols(self) -> list[P.Patrol]:
        store = self.rx.store
        pats = [a for a in await store.list_accounts() if a.panel_kind == "patrol"]
        numbers = [a.number for a in pats]
        last = await store.last_positions(numbers)
        st = await store.patrol_statuses(numbers)
        return [P.Patrol(a.number, a.site_name, st[a.number].status if a.number in st
                         else None, last.get(a.number)) for a in pats]

    async def proposals(self, alarm_id: int, now: float) -> dict:
        """Where the alarm is, the nearest available patrols (straight
        line), and the patrols already dispatched to it."""
        alarm, acct = await self._alarm(alarm_id)
        target = await self._target(alarm, acct)
        patrols = await self._patrols()
        names = {p.account: p.name for p in patrols}
        dispatched = await self.rx.store.list_dispatches(alarm_id=alarm_id)
        gone = {d.patrol for d in dispatched}
        props = [] if target is None else [
            x for x in P.nearest(target, patrols, now, P.MAX_PROPOSALS + len(gone))
            if x.account not in gone][:P.MAX_PROPOSALS]
        return {"alarm_id": alarm_id, "target": target.to_json() if target else None,
                "why_none": None if target is not None else (
                    "the alarm carries no position and its site has no coordinates"),
                "distance": "straight line",
                "proposals": [p.to_json() for p in props],
                "dispatches": [dict(d.to_json(), name=names.get(d.patrol, ""),
                                    arrival_text=None if d.arrival_s is None
                                    else P.elapsed_text(d.arrival_s))
                               for d in dispatched],
                "available": sum(1 for p in patrols if p.status == "available")}

    async def dispatch(self, alarm_id: int, patrol: str, by: str, now: float) -> Dispatch:
        """Send ``patrol`` to the alarm: the dispatch, the patrol's status and
        the alarm's audit row in one transaction (VehicleError: no such
        alarm or patrol, no place to send it, already dispatched)."""
        from receiver.store import DispatchConflict  # noqa: PLC0415

        alarm, acct = await self._alarm(alarm_id)
        target = await self._target(alarm, acct)
        if target is None:
            raise VehicleError("the alarm carries no position and its site has no "
                               "coordinates: nowhere to send a patrol", 409)
        pats = {p.account: p for p in await self._patrols()}
        p = pats.get(patrol)
        if p is None:
            raise VehicleError("account %s is not a patrol car" % patrol, 404)
        dist = None
        if p.last is not None:
            dist = P.distance_m((p.last.position.lat, p.last.position.lon), target.point)
        try:
            d = await self.rx.store.dispatch_patrol(
                alarm_id, patrol, now, by, target.point, target.radius_m, dist,
                P.dispatch_sentence(patrol, p.name, by, target, dist))
        except DispatchConflict as e:
            raise VehicleError(str(e), 409) from None
        self.rx.vehicle_loop.note_dispatch(d)
        self.rx.publish(PatrolUpdate.of(PatrolStatus(patrol, "dispatched", now, by,
                                                     alarm_id), d))
        return d

    async def set_status(self, account: str, status: str, by: str,
                         now: float) -> PatrolStatus:
        if status not in PATROL_STATUSES:
            raise VehicleError("status must be one of %s" % ", ".join(PATROL_STATUSES))
        a = await self.rx.store.get_account(account)
        if a is None or a.panel_kind != "patrol":
            raise VehicleError("account %s is not a patrol car" % account, 404)
        st = await self.rx.store.set_patrol_status(account, status, now, by)
        self.rx.publish(PatrolUpdate.of(st))
        return st

    async def track(self, account: str, since: float | None, until: float | None,
                    limit: int) -> list:
        return await self.rx.store.track(account, since=since, until=until, limit=limit)

    async def last_points(self, account: str) -> list:
        return await self.rx.store.track(account, limit=LAST_POINTS, newest=True)
