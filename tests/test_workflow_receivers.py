"""The operator's workflow across receivers' lives (issue 17): what an
operator did on an alarm (the claim, each step's state, a wait started)
and its escalation deadlines survive a receiver restart, an escalation due
while the receiver was down fires once after it is back; on PostgreSQL two
receivers with two operators racing for one alarm give it one handler, the
receiver that supervises the account fires its escalation once, and when
that receiver stops the other takes the account over and fires the next.

Explicit time goes to the escalation runner (``tick(now)``); nothing
sleeps for a deadline."""

import asyncio
import os
import time

import pytest

from receiver.app import Receiver
from receiver.config import Config
from receiver.testing import running_receiver
from receiver.web.testing import demo_accounts
from receiver.workflow.common import ActionRefused
from receiver.workflow_loop import ESCALATION_TICK_S, RoundSchedule
from testkit.wait import wait_until
from tests.pg_fixture import pg_server, pg_url  # noqa: F401
from tests.test_store_workflow import event
from tests.test_web_workflow_api import alarm_of, setup_workflow, trip


async def test_an_alarm_s_work_and_its_escalations_survive_a_restart(tmp_path):
    cfg = Config(db=os.path.join(str(tmp_path), "receiver.db"), tcp=[("127.0.0.1", 0)])
    async with running_receiver(cfg, demo_accounts()) as rx:
        await setup_workflow(rx)
        await trip(rx, 1001, 1, 122, 4)  # the bank's hold-up: its own plan
        await trip(rx, 1002, 1, 130, 3)  # the jeweller's safe: nobody acknowledges
        hold, safe = await alarm_of(rx, 122), await alarm_of(rx, 130, "1002")
        wf = rx.workflow
        await wf.acknowledge(hold.id, "olga")
        await wf.step(hold.id, 1, "complete", "olga")
        await wf.step(hold.id, 2, "skip", "olga", "the station informs District Command")
        _, wait = await wf.step(hold.id, 6, "start", "olga")
        before = await wf.work(hold.id, trail=True)
    started = time.time()

    rx = Receiver(cfg)
    await rx.start()
    try:
        wf = rx.workflow
        after = await wf.work(hold.id, trail=True)
        assert [(s.state, s.changed_by, s.reason, s.due_at) for s in after.steps] == [
            (s.state, s.changed_by, s.reason, s.due_at) for s in before.steps]
        assert [s.state for s in after.steps] == [
            "completed", "skipped", "open", "open", "open", "waiting", "open"]
        assert (after.alarm.handler, after.alarm.claim_rev) == ("olga", 1)
        assert after.trail == before.trail
        assert after.alarm.plan_name == "holdup-bank"  # the plan it opened with
        # the mandatory steps still bar resolving, after the restart too
        with pytest.raises(ActionRefused, match="mandatory"):
            await wf.resolve(hold.id, "olga", "real-holdup")
        # and another operator still cannot act on olga's alarm
        with pytest.raises(ActionRefused, match="take it over"):
            await wf.step(hold.id, 3, "complete", "piotr")
        # the wait's minutes and the safe's 45 s passed while nobody looked:
        # the first round fires each once, the next nothing
        later = max(wait.due_at, started) + 1
        assert wait.due_at - started > 9 * 60  # not fired by the runner in real time
        await rx.escalations.tick(later)
        assert rx.escalations.fired == 2
        await rx.escalations.tick(later + 1)
        assert rx.escalations.fired == 2
        kinds = [e.action for e in (await wf.work(hold.id, trail=True)).trail[-1:]]
        assert kinds == ["escalation.wait"]
        assert [a.id for a in await wf.escalated()] == [safe.id]
    finally:
        await rx.stop()


async def test_two_receivers_on_postgresql_one_handler_one_escalation_and_a_takeover(pg_url):
    pytest.importorskip("asyncpg")
    accounts = demo_accounts()
    rxs = [Receiver(Config(db=pg_url, tcp=[("127.0.0.1", 0)], cluster_instance=n))
           for n in ("rx-a", "rx-b")]
    await rxs[0].store.open()
    try:
        for acct in accounts.values():
            await rxs[0].store.add_account(acct)
    finally:
        await rxs[0].store.close()
    running = []
    try:
        for rx in rxs:
            await rx.start()
            running.append(rx)
        a, b = rxs
        await wait_until(lambda: a.cluster.owns("1001") != b.cluster.owns("1001"), 30,
                         what="one receiver supervises account 1001")
        await setup_workflow(a)
        await b.workflow.refresh()
        assert b.workflow.planset.hash == a.workflow.planset.hash
        # an alarm stored 100 s ago: its 45 s to acknowledge are over
        rec = event(a.workflow, 1, 130, "burglary", 5, at=time.time() - 100)
        aid = (await a.store.ingest(rec)).alarm_id
        # olga on one receiver's console and piotr on the other's take it at once
        got = await asyncio.gather(a.workflow.claim(aid, "olga"), b.workflow.claim(aid, "piotr"),
                                   return_exceptions=True)
        won = [g for g in got if not isinstance(g, BaseException)]
        lost = [g for g in got if isinstance(g, BaseException)]
        assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], ActionRefused), got
        holder = won[0].handler
        assert "Being handled by %s" % holder in str(lost[0])
        assert (await a.store.get_alarm(aid)).claim_rev == 1
        # the escalation: both receivers' runners look; the account's
        # supervisor fires it, once
        owner, other = (a, b) if a.cluster.owns("1001") else (b, a)
        await wait_until(lambda: owner.escalations.fired == 1, 30, what="escalation fired")
        now = time.time()
        await asyncio.gather(a.escalations.tick(now), b.escalations.tick(now))
        assert (owner.escalations.fired, other.escalations.fired) == (1, 0)
        [trail_row] = [e for e in (await a.workflow.work(aid, trail=True)).trail
                       if e.action == "escalation.ack"]
        assert trail_row.actor == "receiver"
        # the owner stops: the other takes the account over and fires the next one
        await owner.stop()
        running.remove(owner)
        await wait_until(lambda: other.cluster.owns("1001"), 60, what="account taken over")
        rec = event(other.workflow, 2, 130, "burglary", 5, at=time.time() - 100)
        second = (await other.store.ingest(rec)).alarm_id
        other.escalations.wake()
        await wait_until(lambda: other.escalations.fired == 1, 30, what="the next escalation")
        assert [x.id for x in await other.workflow.escalated()] == [aid, second]
    finally:
        for rx in reversed(running):
            await rx.stop()


async def test_a_burst_of_alarms_reads_the_open_queue_once_per_round_not_per_alarm(tmp_path):
    """Each escalation round reads every open alarm's timers: a burst of
    alarms (a city-wide power cut) must bring their deadlines forward
    without a round per alarm, and the round still comes when one is due."""
    cfg = Config(db=os.path.join(str(tmp_path), "receiver.db"), tcp=[("127.0.0.1", 0)])
    async with running_receiver(cfg, demo_accounts()) as rx:
        await setup_workflow(rx)
        loop = rx.escalations
        await wait_until(lambda: loop.rounds >= 1, 30, what="the first round")
        started, before = time.monotonic(), loop.rounds
        for seq in range(1, 25):  # the jeweller's safe: its deadline is 45 s away
            await trip(rx, 1002, seq, 130, 1 + seq % 8)
        elapsed = time.monotonic() - started
        assert len([a for a in await rx.store.list_alarms() if a.account == "1002"]) == 24
        # at most the rounds its tick brings in that time: none of them per alarm
        assert loop.rounds - before <= 1 + elapsed / ESCALATION_TICK_S


def test_the_round_schedule_moves_forward_for_a_deadline_never_back():
    s = RoundSchedule()
    assert s.due(0.0)  # the first round: at once
    s.start()
    s.ran(100.0, None)  # nothing pending: the tick
    assert s.sleep(100.0) == ESCALATION_TICK_S
    assert s.wake(102.0) and not s.wake(103.0)  # a later deadline moves nothing
    assert s.sleep(101.0) == 1.0 and not s.due(101.9) and s.due(102.0)
    s.start()
    assert s.wake(200.0)  # woken during the round: kept for the next
    s.ran(102.0, 104.0)
    assert s.sleep(102.0) == 2.0
    assert s.wake() and s.sleep(102.0) is None  # without a time: at once
    s.start()
    s.ran(103.0, 103.5)  # the round's own next deadline comes first
    assert s.sleep(103.0) == 0.5
