# Which reporting path carries the events, and when a path that answers
# but does not accept them has failed (docs/firmware.md, "Failover").
#
# One home for the rule that reporter.py (native) and dc09rep.py (SIA
# DC-09) both follow.  Sans-I/O: the reporter tells it what happened (the
# head event offered on a path, refused there, ACKed there; a path's link
# up or down) with `now_ms`, and it answers which path carries the head
# event and when a failed path is probed.
#
# The rule:
# - A path is *trusted for events* until it fails one.  It fails the head
#   event when it refused it `fail_after` times (a NAK of any reason: busy,
#   wrong key, replay, time, ...; the one correction a NAK(time) or a
#   resequence asks for is retried once before NAKs count), or when it has
#   not ACKed it within `fail_ms` of its first offer there, whatever the
#   mix of NAKs and silence.  Silence alone is also the link's own rule
#   (fail_after unanswered transmissions: PathDown, 350).
# - The head event goes to the first path, primary first, that is up and
#   trusted.  When none is, it stays where it is; and a path that fails it
#   while no other path is trusted hands it to the next path that is up,
#   round robin, each for its own bound: the event is retried on every
#   path that answers and sticks on none.
# - A failed path is trusted again only when it ACKs an event: the head
#   event (round robin above) or the probe, a Contact ID 602 "periodic
#   test" the reporter offers on it while it is on standby.  An ACKed
#   heartbeat or NULL proves the link only: a receiver that ACKs link
#   tests and NAKs events (a full disk, a wrong key) never wins the events
#   back by them.  The first probe goes `fail_ms` after the failure; each
#   failure after a probe's ACK, without a queued event ACKed in between,
#   doubles that hold-off (at most _HOLD_MAX_MS), so a receiver that ACKs
#   602 but refuses alarms costs one event's bound per hour at most.
#
# Invariants: `ok` only turns True on an ACKed event or probe; `pick()`
# never returns a path that is down while another is up.

from fwutil import const, ticks_diff, ticks_add

# Hold-off before a failed path is probed again, at most (1 h): doubling
# from fail_ms, as above.
_HOLD_MAX_MS = const(3600000)


class Failover:
    def __init__(self, n, fail_after, fail_ms, now_ms, panel=None, log=None):
        self.n = n
        self.panel = panel  # reports 354 (panel.path_events); None in unit tests
        self.log = log or (lambda s: None)
        self.fail_after = fail_after
        self.fail_ms = fail_ms
        self.ok = [True] * n  # trusted for events
        self.refusals = [0] * n  # NAKs of the head event on this path
        self.since = [None] * n  # type: list  # first offer of the head event here (ticks)
        self.free = [True] * n  # the one free correction (NAK time, resequence) unused
        self.why = [""] * n  # the last refusal, in words (354 text, log)
        self.streak = [0] * n  # failures since a queued event was last ACKed here
        self.probe_at = [now_ms] * n  # type: list[int]  # first probe not before (ticks)

    # -- what the reporter saw ------------------------------------------------

    def offered(self, i, now_ms):
        """The head event was (re)offered on path i: its bound runs from
        the first offer until it is ACKed or moved away."""
        if self.since[i] is None:
            self.since[i] = now_ms

    def refused(self, i, why, correction=False):
        """Path i NAKed the head event (`why`: words for the log and the
        354).  `correction`: the NAK asked for something the reporter did
        (set the clock, resequence); the first one in a row is free."""
        self.why[i] = why
        if correction and self.free[i]:
            self.free[i] = False
            return
        self.refusals[i] += 1

    def expired(self, i, now_ms):
        """Has path i failed the head event it carries?"""
        if self.since[i] is None:
            return False
        if self.refusals[i] >= self.fail_after:
            return True
        if ticks_diff(now_ms, self.since[i]) >= self.fail_ms:
            if not self.why[i]:
                self.why[i] = "no ACK in %d s" % (self.fail_ms // 1000)
            return True
        return False

    def clear(self, i):
        """The head event left path i (ACKed, or moved to another path)."""
        self.refusals[i] = 0
        self.since[i] = None
        self.free[i] = True

    def fail(self, i, now_ms):
        """Path i failed the head event.  True if it was trusted until now
        (report 354 new); it is probed after the hold-off."""
        was = self.ok[i]
        self.ok[i] = False
        self.clear(i)
        self.streak[i] += 1
        hold = self.fail_ms << min(self.streak[i] - 1, 16)
        self.probe_at[i] = ticks_add(now_ms, min(hold, _HOLD_MAX_MS))
        return was

    def acked(self, i, queued):
        """Path i ACKed an event (`queued`: a queued event, not the
        probe).  True if it was failed until now (report 354 restore)."""
        self.clear(i)
        self.why[i] = ""
        if queued:
            self.streak[i] = 0
        if self.ok[i]:
            return False
        self.ok[i] = True
        return True

    def probe_due(self, i, now_ms):
        """Is a probe (602) due on failed path i?"""
        return not self.ok[i] and ticks_diff(now_ms, self.probe_at[i]) >= 0

    # -- what the reporters call ---------------------------------------------------

    def watch(self, i, up_i, now_ms):
        """Path i carries the head event (`up_i`: its link is up).  True if
        it has failed it now (the reporter then calls failed()).  The bound
        does not run while the link is down: silence is the link's rule
        (350), and the bound starts again when the path answers."""
        if not up_i:
            self.clear(i)
            return False
        self.offered(i, now_ms)
        return self.expired(i, now_ms)

    def failed(self, i, now_ms, up):
        """Path i failed the head event: 354 new (once per failure) and
        the path that carries it now (after_failure())."""
        why = self.why[i]
        self.log("path %d failed the event: %s" % (i + 1, why))
        if self.fail(i, now_ms) and self.panel is not None:
            self.panel.path_events(i + 1, False, why)
        return self.after_failure(i, up)

    def accepted(self, i, queued, active, up):
        """Path i ACKed an event (`queued`) or the probe: the path that
        carries the events now (a failed path trusted again: 354 restore,
        and the primary wins them back)."""
        if not self.acked(i, queued):
            return active
        self.log("path %d accepts events again" % (i + 1))
        if self.panel is not None:
            self.panel.path_events(i + 1, True)
        return self.pick(active, up)

    # -- which path carries the events -------------------------------------------

    def pick(self, active, up):
        """The path for the head event: the first one up and trusted,
        primary first; else the active one while it is up; else the first
        one up; else the active one."""
        for i in range(self.n):
            if up[i] and self.ok[i]:
                return i
        if up[active]:
            return active
        for i in range(self.n):
            if up[i]:
                return i
        return active

    def after_failure(self, i, up):
        """Path i just failed the head event: where it goes now.  A
        trusted path that is up if any; else the next path that is up
        after i (round robin); else i."""
        a = self.pick(i, up)
        if a != i:
            return a
        for k in range(1, self.n):
            j = (i + k) % self.n
            if up[j]:
                return j
        return i


class PathPoll:
    """The poll order both reporters follow over their paths (reporter.py,
    dc09rep.py subclass it): what each path's link brought, the head
    event's bound, what each idle path is to send, each path's sending,
    the bound again.  The subclass gives the steps: _receive(i, now_ms),
    _data(i, data, now_ms), _check(now_ms), _schedule(now_ms) and
    _send(i, now_ms).  Its `links` are the paths, primary first.  These
    run on every report poll in frames small enough for the C stack
    (fwutil.py): an idle poll allocates nothing."""

    def __init__(self, links):
        self.links = links

    def poll(self, now_ms):
        n = len(self.links)
        for i in range(n):
            self._receive(i, now_ms)
        self._check(now_ms)
        self._schedule(now_ms)
        for i in range(n):
            self._send(i, now_ms)
        self._check(now_ms)

    def _read(self, i, link, now_ms):
        """What path i's link holds into _data(), 4 reads at most: bounded
        work per poll."""
        n = 4
        while n:
            data = link.recv()
            if data is None:
                return
            self._data(i, data, now_ms)
            n -= 1

    # the subclass's steps (above)
    def _receive(self, i, now_ms):
        raise NotImplementedError

    def _data(self, i, data, now_ms):
        raise NotImplementedError

    def _check(self, now_ms):
        raise NotImplementedError

    def _schedule(self, now_ms):
        raise NotImplementedError

    def _send(self, i, now_ms):
        raise NotImplementedError
