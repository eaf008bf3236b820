"""Site notes: what an operator must know about a site before acting,
shown at the top of every alarm of that site.

A note is *permanent* (access instructions, a guard dog, the key box) or
*temporary*: it has an ``expires_at`` (the owner on holiday until Friday),
and may start later (``starts_at``: the branch closed for works from
Monday).  :func:`shown` decides which notes are shown at a time, and in
which order: temporary notes first (they are news: soonest to expire
first), then permanent ones, oldest first (a site's standing instructions
read in the order they were written).  Nothing is deleted by expiry; an
expired note stays in the site's history (the store keeps it, with who
wrote it), it is only no longer shown.

No clock: ``now`` comes in (Unix seconds); times are shown in the site's
time zone.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from receiver.workflow.common import (ActionRefused, WorkflowConfigError, check_keys, label)

# A note is read under stress at the top of an alarm: a few lines at most.
MAX_NOTE_LEN = 500
# A temporary note longer than a year is a permanent one that someone
# forgot to call permanent.
MAX_TEMPORARY_S = 366 * 86400


@dataclass(frozen=True)
class SiteNote:
    account: str
    text: str
    author: str
    created_at: float
    expires_at: float | None = None  # None: permanent
    starts_at: float | None = None  # None: from created_at
    id: int | None = None  # the store's id (None for a note read from a file)

    @property
    def permanent(self) -> bool:
        return self.expires_at is None

    def visible(self, now: float) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and \
            (self.expires_at is None or now < self.expires_at)

    def when_words(self, time_zone: str) -> str:
        """'' for a permanent note, else 'until Fri 14 Jun 18:00' (and
        'from Mon 10 Jun 08:00 ' before it), in the site's time zone."""
        if self.expires_at is None:
            return ""
        tz = ZoneInfo(time_zone)

        def fmt(t):
            return _dt.datetime.fromtimestamp(t, tz).strftime("%a %d %b %H:%M")
        s = "until " + fmt(self.expires_at)
        if self.starts_at is not None:
            s = "from %s %s" % (fmt(self.starts_at), s)
        return s


def shown(notes, now: float) -> list[SiteNote]:
    """The notes shown at ``now``: temporary first (soonest to expire
    first), then permanent (oldest first)."""
    vis = [n for n in notes if n.visible(now)]
    temp = sorted((n for n in vis if not n.permanent), key=lambda n: (n.expires_at, n.created_at))
    perm = sorted((n for n in vis if n.permanent), key=lambda n: (n.created_at, n.id or 0))
    return temp + perm


def new_note(account: str, text, author: str, now: float, expires_at: float | None = None,
             starts_at: float | None = None) -> SiteNote:
    """A note an operator writes now; raises ActionRefused with why."""
    if not isinstance(text, str) or not text.strip():
        raise ActionRefused("a note needs a text")
    text = text.strip()
    if len(text) > MAX_NOTE_LEN:
        raise ActionRefused("a note has at most %d characters (this one has %d)"
                            % (MAX_NOTE_LEN, len(text)))
    if starts_at is not None and expires_at is None:
        raise ActionRefused("a note that starts later needs an end (until when?)")
    if expires_at is not None:
        if expires_at <= now:
            raise ActionRefused("the note would end before it is written: give a time in "
                                "the future")
        if starts_at is not None and starts_at >= expires_at:
            raise ActionRefused("the note would end before it starts")
        if expires_at - (starts_at or now) > MAX_TEMPORARY_S:
            raise ActionRefused("a temporary note lasts at most a year; write a permanent "
                                "note instead")
    return SiteNote(account, text, author, now, expires_at, starts_at)


def _file_time(v, tz: ZoneInfo, where: str) -> float:
    """A TOML date-time: with an offset as given, without one in the site's
    time zone; a bare date is that day's start."""
    if isinstance(v, _dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=tz)).timestamp()
    if isinstance(v, _dt.date):
        return _dt.datetime(v.year, v.month, v.day, tzinfo=tz).timestamp()
    raise WorkflowConfigError(where, "must be a TOML date-time (2025-06-14T18:00:00+02:00, "
                              "or without the offset for the site's time zone)")


def parse_file_notes(items, account: str, tz: ZoneInfo, where: str, author: str,
                     loaded_at: float) -> tuple:
    """A site file's ``[[notes]]``: ``text``, optional ``until`` and ``from``."""
    if not isinstance(items, list):
        raise WorkflowConfigError(where, "must be an array of tables ([[notes]])")
    out = []
    for i, n in enumerate(items):
        w = "%s[%d]" % (where, i + 1)
        check_keys(n, ("text", "until", "from"), w)
        text = label(n.get("text"), w + ": text", MAX_NOTE_LEN)
        until = _file_time(n["until"], tz, w + ": until") if "until" in n else None
        start = _file_time(n["from"], tz, w + ": from") if "from" in n else None
        if start is not None and until is None:
            raise WorkflowConfigError(w, "a note with from needs until")
        if start is not None and until is not None and start >= until:
            raise WorkflowConfigError(w, "from must be before until")
        out.append(SiteNote(account, text, author, loaded_at, until, start))
    return tuple(out)
