"""Line supervision of every account and reporting path (sans-I/O).

EN 50136-1 asks an alarm transmission system to report a failure of the
path to the receiving centre within a set time (the "reporting time" of its
ATS category, from 20 s for DP4 to 25 h for SP1).  Here each account has a
supervision :class:`Profile`: the panel's heartbeat interval plus a grace
for a lost heartbeat or two.  A path not heard within ``interval + grace``
fails; it is restored the next time a frame arrives on it.

The receiver turns a :class:`Change` into an event of its own, Contact ID
350 "Communication trouble", qualifier 1 (new) on failure and 3 (restore),
partition 0, zone = path number (1 primary, 2 backup), so a path failure
reads like any other trouble and goes through the same store, alarm queue
and routing.  (354 "Failure to communicate event" is what a *panel* reports
about its own queue; 350 is the receiver's word about the line.)

This module reads no clock and owns no task: ``now`` (Unix seconds) comes
in as an argument, and the receiver's one timer task calls :meth:`poll`
when :meth:`next_deadline` is due.  That keeps 50,000 accounts at one heap
entry per supervised path instead of a task or timer per panel, and lets
tests drive hours of supervision without sleeping.

Invariants:

- Each supervised (account, path) has exactly one *valid* heap entry while
  its state is OK and none while FAILED; ``_Line.scheduled`` names the
  deadline of the valid entry, and any other entry for the key is stale and
  dropped when it surfaces (lazy deletion).  Hearing a panel does not touch
  the heap: the entry is pushed forward only when it surfaces early, so a
  heartbeat costs O(1).
- Transitions come from ``TRANSITIONS``; a (state, input) pair with no entry
  is a bug (LookupError), not a silent no-op.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from protocol.contactid import PATH_NAMES, path_label

OK = "ok"
FAILED = "failed"

HEARD = "heard"
EXPIRED = "expired"

# TRANSITIONS[state][input] -> (next state, change to report or None)
TRANSITIONS = {
    OK: {HEARD: (OK, None), EXPIRED: (FAILED, "failure")},
    FAILED: {HEARD: (OK, "restore")},
}

# Contact ID (SIA DC-05) code the receiver raises for a supervision change.
CODE_COMM_TROUBLE = 350


@dataclass(frozen=True)
class Profile:
    """Heartbeat interval and grace, in seconds, and the paths supervised."""

    interval_s: int
    grace_s: int
    paths: tuple = (1,)

    def __post_init__(self):
        if not isinstance(self.interval_s, int) or self.interval_s <= 0:
            raise ValueError("supervision interval must be a positive integer (s)")
        if not isinstance(self.grace_s, int) or self.grace_s < 0:
            raise ValueError("supervision grace must be a non-negative integer (s)")
        if not self.paths or any(p not in PATH_NAMES for p in self.paths):
            raise ValueError("supervised paths must be a non-empty subset of (1, 2)")

    @property
    def timeout_s(self) -> int:
        return self.interval_s + self.grace_s


def account_profile(account, default: Profile) -> Profile | None:
    """The profile the receiver supervises ``account`` (a store Account)
    with: its own heartbeat and grace where set, else ``default``'s (the
    config's [supervision]); its own paths.  None: unsupervised.  The
    receiver and the panel template (what the installer's tool lines the
    panel's heartbeats up with) both read it here."""
    if not account.supervised:
        return None
    return Profile(account.heartbeat_s or default.interval_s,
                   default.grace_s if account.grace_s is None else account.grace_s,
                   tuple(account.supervised_paths))


@dataclass(frozen=True)
class Change:
    """A path failed (``failed`` True) or was restored."""

    account: str
    path: int
    failed: bool
    at: float  # when it was decided (the ``now`` passed in)
    last_heard: float
    timeout_s: int

    @property
    def qualifier(self) -> int:
        return 1 if self.failed else 3

    def describe(self) -> str:
        """The receiver's words for the change: 'backup path (2) silent for
        90 s', 'backup path (2) reporting again'."""
        if self.failed:
            return "%s silent for %s" % (path_label(self.path),
                                         duration_text(self.at - self.last_heard))
        return "%s reporting again" % path_label(self.path)


def duration_text(seconds: float) -> str:
    """'90 s', '12 min', '3 h 5 min': a silence as an operator reads it."""
    s = max(0, int(seconds))
    if s < 120:
        return "%d s" % s
    if s < 7200:
        return "%d min" % (s // 60)
    return "%d h %d min" % (s // 3600, s % 3600 // 60)


class _Line:
    __slots__ = ("state", "last_heard", "timeout_s", "scheduled", "heard_at")

    def __init__(self, state, last_heard, timeout_s):
        self.state = state
        # the start of the current timeout: the last hearing, or when
        # supervision of the line began (nothing heard yet)
        self.last_heard = last_heard
        self.timeout_s = timeout_s
        self.scheduled: float | None = None
        # when a frame was really heard on it (None: not since supervision
        # began here; the console says "never heard", not the start time)
        self.heard_at: float | None = None


class Supervisor:
    def __init__(self):
        self._lines: dict[tuple[str, int], _Line] = {}
        self._profiles: dict[str, Profile] = {}
        self._heap: list = []  # (deadline, account, path)

    def __len__(self) -> int:
        return len(self._lines)

    # -- configuration --------------------------------------------------------

    def set_profile(self, account: str, profile: Profile | None, now: float,
                    failed_paths=(), last_heard=None) -> None:
        """Supervise ``account`` with ``profile`` (None: stop supervising).

        A newly supervised path gets a full timeout from ``now`` (a receiver
        that just started has heard nobody yet), or from
        ``last_heard[path]`` when that is known (a receiver taking over
        supervision from another one uses the time recorded in the shared
        store: receiver.ownership).  ``failed_paths`` marks paths already in
        failure (state recovered from the store), so they raise a restore
        when heard rather than a second failure."""
        if profile is None:
            self.remove(account)
            return
        old = self._profiles.get(account)
        self._profiles[account] = profile
        if old is not None:
            for p in old.paths:
                if p not in profile.paths:
                    self._lines.pop((account, p), None)
        for p in profile.paths:
            key = (account, p)
            line = self._lines.get(key)
            if line is None:
                state = FAILED if p in failed_paths else OK
                since = (last_heard or {}).get(p, now)
                line = _Line(state, since, profile.timeout_s)
                self._lines[key] = line
                if state == OK:
                    self._schedule(key, line, since + profile.timeout_s)
            elif line.timeout_s != profile.timeout_s:
                line.timeout_s = profile.timeout_s
                if line.state == OK:
                    self._schedule(key, line, line.last_heard + line.timeout_s)

    def remove(self, account: str) -> None:
        prof = self._profiles.pop(account, None)
        if prof is not None:
            for p in prof.paths:
                self._lines.pop((account, p), None)  # heap entries go stale

    def profile(self, account: str) -> Profile | None:
        return self._profiles.get(account)

    def accounts(self) -> list[str]:
        """The accounts supervised here."""
        return list(self._profiles)

    def _schedule(self, key, line, deadline) -> None:
        line.scheduled = deadline
        heapq.heappush(self._heap, (deadline, key[0], key[1]))

    # -- inputs -----------------------------------------------------------------

    def heard(self, account: str, path: int, now: float) -> Change | None:
        """A frame from ``account`` authenticated on ``path``."""
        line = self._lines.get((account, path))
        if line is None:
            return None  # not supervised on this path
        if now > line.last_heard:
            line.last_heard = now
        if line.heard_at is None or now > line.heard_at:
            line.heard_at = now
        state, change = TRANSITIONS[line.state][HEARD]
        line.state = state
        if change is None:
            return None
        self._schedule((account, path), line, now + line.timeout_s)
        return Change(account, path, False, now, now, line.timeout_s)

    def poll(self, now: float, limit: int | None = None) -> list[Change]:
        """Every path whose deadline has passed by ``now`` (at most ``limit``)."""
        out: list[Change] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            deadline, account, path = heapq.heappop(heap)
            line = self._lines.get((account, path))
            if line is None or line.state != OK or line.scheduled != deadline:
                continue  # stale entry
            real = line.last_heard + line.timeout_s
            if real > now:
                self._schedule((account, path), line, real)  # heard since
                continue
            state, change = TRANSITIONS[line.state][EXPIRED]
            line.state = state
            line.scheduled = None
            out.append(Change(account, path, True, now, line.last_heard, line.timeout_s))
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may next have something (possibly stale: early)."""
        return self._heap[0][0] if self._heap else None

    # -- inspection -------------------------------------------------------------

    def status(self, account: str) -> dict:
        prof = self._profiles.get(account)
        if prof is None:
            return {}
        out = {}
        for p in prof.paths:
            line = self._lines[(account, p)]
            out[p] = {"state": line.state, "last_heard": line.last_heard,
                      "heard_at": line.heard_at,
                      "deadline": line.last_heard + line.timeout_s}
        return out

    def failed(self) -> list[tuple[str, int]]:
        return sorted(k for k, v in self._lines.items() if v.state == FAILED)

    def heap_size(self) -> int:
        return len(self._heap)
