"""SIA DC-09 on the receiver: the sans-I/O judge between the codec
(``protocol.dc09``) and the socket adapters (``receiver.dc09_listener``).

:meth:`Dc09Core.judge` takes one LF..CR frame and the receiver's clock
(``now``, Unix seconds, UTC) and returns a :class:`Verdict` saying what to
do; it opens no socket, reads no clock and touches no store.  The adapter
then replies, records a security event, or ingests the event and answers
with :meth:`Dc09Core.ack` (after the commit) or :meth:`Dc09Core.nak`.

Replies (ANSI/SIA DC-09-2013 5.5.3, and where we chose):

===============================================  ====================================
frame                                            reply
===============================================  ====================================
event (ADM-CID, SIA-DCS) from a known account    ACK (``*ACK`` if it came encrypted)
                                                 once the event is durably stored
NULL link test                                   ACK at once (nothing to store)
CRC error, malformed frame, oversize             NAK (``Dc09CrcError`` ...)
encrypted message failing the timestamp test     NAK (5.5.3.2)
store busy or failing                            NAK: the panel keeps the event and
                                                 retries (never ACK what is not on
                                                 disk)
well-formed token we do not handle ("ADM-XYZ")   DUH (5.5.3.3: received correctly,
                                                 cannot be processed)
unknown account, wrong or missing key,           nothing; a security event is
clear message for an account with a key          recorded (as the native protocol)
ACK/NAK/DUH sent *to* us                         nothing (two receivers must not
                                                 answer each other for ever)
===============================================  ====================================

Every NAK is unencrypted and carries the receiver's time (5.5.3.2); for an
account configured with a UTC offset (panels that send local time) it is
that account's local time, so the panel's clock is corrected in the
convention it uses.  When the account is not known (a CRC error) it is UTC.

Why silence for security rejections rather than DUH: many panels take DUH
as final and drop the message, so a provisioning mistake at the central
station (account not created yet, key mistyped) would cost events; without
an answer the panel retries, fails over to its backup receiver and shows a
communication trouble locally.  Silence also tells a prober nothing.

Content we cannot map is never refused: an ADM-CID or SIA-DCS message that
arrives intact but whose event code is unknown, or whose data is not the
expected shape, is stored as an event of its own with the data verbatim in
``text`` (Contact ID code 0, "Event 000", for data with no Contact ID
code) and ACKed.  An operator can read it; a DUH would have lost it.

Duplicates (retransmissions after a lost ACK, or the same message over
two paths): DC-09 sequence numbers run 0001..9999 and wrap, and many
panels restart them at boot, so (account, seq) alone is not unique over
time.  The dedupe key is the sequence number plus a digest of the message
content (ID token, line and data; not the pad, the timestamp or the
receiver number, which differ between copies), made unique per time
window: a copy seen within ``DEDUPE_WINDOW_S`` of the first gets the first
copy's key, and the store's unique ``(account, dedupe_key)`` keeps one.  The
window's memory is in this process; after a receiver restart a copy still
collides when it falls in the same ``DEDUPE_WINDOW_S`` bucket of the clock
as the first (a rare restart across a bucket boundary stores it twice:
delivery stays at-least-once).

Invariants:

- ``judge`` raises nothing for any bytes a peer sends (every codec error is
  a ``Dc09Error``, turned into a verdict).
- An ACK is built only by :meth:`ack`, which the adapter calls after the
  commit returned (or at once for a NULL).
- The recent-message memory is bounded (``MAX_RECENT``) and expires after
  ``DEDUPE_WINDOW_S``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from protocol import contactid
from protocol import dc09
from protocol.errors import LocalProtocolError
from receiver.logfmt import q
from receiver.records import Account

_LOGGER = logging.getLogger(__name__)

# The timestamp test's default window (DC-09 5.5.1.8): a message may be up
# to 40 s older and 20 s newer than the receiver's clock.
DEFAULT_WINDOW = dc09.DEFAULT_WINDOW
# A copy of a message (same account, sequence and content) within this many
# seconds of the first is a duplicate.  Panels retransmit for a few
# minutes before they fail over (DC-09 leaves the schedule to the
# equipment; ours gives up on a path after fail_after x backoff, at most
# a few minutes); ten minutes covers that and keeps a panel that reboots
# and restarts its sequence at 0001 from being mistaken for a copy unless
# it sends the very same event within those ten minutes.
DEDUPE_WINDOW_S = 600
# Recent messages remembered at most: 50,000 panels sending a message each
# every ten minutes, with room to spare; each entry is ~200 bytes.
MAX_RECENT = 200_000
# Longest event text kept (verbatim data of a message we cannot map).  The
# DC-09 body is at most 4095 bytes; an operator needs the start of it.
MAX_TEXT = 512
# Largest zone/user number taken from a message: Contact ID has 3 digits,
# SIA DC-03 addresses are up to 4; anything longer is kept in the text.
MAX_ZONE = 9999

# Events one message may carry into the store: a SIA DC-09 block with more
# is stored as its first MAX_EVENTS - 1 events and one event holding the
# rest verbatim.  A 4095-byte body holds at most ~800 events of 5
# characters ("/BA01"); no panel sends more than a handful at once.
MAX_EVENTS = 64
# Accounts whose tolerated field deviations are remembered (each logged
# once per account): a bound on memory, not on panels; past it the log
# line repeats for the newest accounts.
MAX_DEVIATION_ACCOUNTS = 100_000

# Compatibility options a DC-09 account may be given ([dc09.accounts.N]
# compat = [...], docs/dc09.md "Field deviations").
COMPAT_OPTIONS = {
    "crc_includes_cr": "the panel's CRC and length count the closing CR (seen from ELDES "
                       "panels)",
}

# Verdict kinds
EVENT = "event"        # ingest verdict.events, then ACK (or NAK if busy)
LINK = "link"          # NULL: supervision heard it; reply with ack() at once
REPLY = "reply"        # send verdict.reply (NAK or DUH) now
SECURITY = "security"  # record a security event; no reply
IGNORE = "ignore"      # nothing to do (a reply sent to us)

_DIGEST_LEN = 16  # hex digits of sha256: 64 bits, ample per (account, seq, window)


@dataclass(frozen=True)
class AccountSettings:
    """Per-account DC-09 settings: the timestamp window (seconds, message
    time minus receiver time), the offset of the panel's clock from UTC
    (panels that send local time: seconds east of UTC), whether clear
    messages get the timestamp test too (off by default: the standard
    tests encrypted messages only), and the compatibility options
    (COMPAT_OPTIONS) the account is given."""

    window: tuple = DEFAULT_WINDOW
    utc_offset_s: int = 0
    check_clear_time: bool = False
    compat: frozenset = frozenset()


@dataclass
class Verdict:
    kind: str
    reply: bytes | None = None
    message: dc09.Dc09Message | None = None
    account: Account | None = None
    events: list | None = None  # normalized event dicts, one per event of the message
    reason: str = ""  # why (metrics label, security reason)
    detail: str = ""
    account_number: str | None = None  # as sent, for logs and security events
    seq: int | None = None


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class RecentMessages:
    """Which (account, seq, digest) were seen, and when first, for
    ``window_s``; gives the dedupe key of a message (see the module doc)."""

    def __init__(self, window_s: float = DEDUPE_WINDOW_S, max_entries: int = MAX_RECENT):
        self.window_s = window_s
        self.max_entries = max_entries
        self._first: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._first)

    def dedupe_key(self, account: str, seq: int, digest: str, now: float) -> str:
        k = (account, seq, digest)
        first = self._first.get(k)
        if first is None or now - first > self.window_s:
            first = now
            self._first[k] = first
            self._first.move_to_end(k)
        self._prune(now)
        return "dc09:%04d:%s:%d" % (seq, digest, int(first // self.window_s))

    def _prune(self, now: float) -> None:
        d = self._first
        while d:
            k, t = next(iter(d.items()))
            if now - t > self.window_s or len(d) > self.max_entries:
                del d[k]
            else:
                break


def content_digest(msg: dc09.Dc09Message) -> str:
    """What two copies of one message share: the ID token, line, data and
    extended data (not the pad, timestamp or receiver number).  The same
    sequence with other extended data is another message."""
    text = "%s\x00%s\x00%s" % (msg.msg_id, msg.line or "", msg.data)
    for letter, value in msg.extended:
        text += "\x00%s%s" % (letter, value)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_LEN]


class Dc09Core:
    """Judges DC-09 frames for one receiver.

    ``lookup(number) -> Account | None`` gives the account (DC-09 accounts
    are stored in upper-case hex); ``settings(number) -> AccountSettings``
    its timestamp window and UTC offset.
    """

    def __init__(self, lookup, settings=None):
        self._lookup = lookup
        self._settings = settings or (lambda number: AccountSettings())
        self.recent = RecentMessages()
        self._deviations: OrderedDict = OrderedDict()  # account -> set of deviations logged

    # -- helpers ------------------------------------------------------------------

    def account(self, number: str | None):
        if not number:
            return None
        a = self._lookup(number.upper())
        if a is None or a.protocol != "dc09":
            return None
        return a

    def settings(self, number: str | None) -> AccountSettings:
        if not number:
            return AccountSettings()
        return self._settings(number.upper()) or AccountSettings()

    def _key(self, number: str):
        a = self.account(number)
        return (a.key or None) if a is not None else None

    def panel_time(self, number: str | None, now: float) -> datetime:
        """The receiver's clock in the account's convention (UTC + offset)."""
        return _utc(now + self.settings(number).utc_offset_s)

    def nak(self, number: str | None, now: float) -> bytes:
        """NAK with the receiver's time (5.5.3.2), never encrypted."""
        return dc09.build_nak(self.panel_time(number, now))

    def ack(self, v: Verdict, now: float) -> bytes:
        """ACK for an accepted message: ``*ACK`` with the account's key and
        time when the message was encrypted (5.5.3.1)."""
        msg, account = v.message, v.account
        if msg is None or account is None:
            raise LocalProtocolError("ack() of a verdict that accepted no message")
        key = account.key if msg.encrypted else None
        return dc09.build_ack(msg, key=key, now=self.panel_time(msg.account, now))

    # -- the judge ------------------------------------------------------------------

    def _crc_includes_cr(self, number: str) -> bool:
        return "crc_includes_cr" in self.settings(number).compat

    def tolerated(self, number: str, deviation: str, detail: str = "") -> None:
        """Log a field deviation we accepted from ``number``, once per account
        and deviation (docs/dc09.md "Field deviations")."""
        seen = self._deviations.get(number)
        if seen is None:
            seen = self._deviations[number] = set()
            while len(self._deviations) > MAX_DEVIATION_ACCOUNTS:
                self._deviations.popitem(last=False)
        if deviation in seen:
            return
        seen.add(deviation)
        _LOGGER.warning("DC-09 field deviation tolerated account=%s deviation=%s what=%s%s "
                        "(logged once per account)", number, deviation,
                        q(dc09.DEVIATIONS.get(deviation, deviation)),
                        " detail=%s" % q(detail) if detail else "")

    def judge(self, frame: bytes, now: float) -> Verdict:
        try:
            msg = dc09.parse(frame, key_lookup=self._key,
                             crc_includes_cr=self._crc_includes_cr)
        except dc09.Dc09Error as e:
            return self._unparsed(e, now)
        except LocalProtocolError as e:
            # our own account key is unusable (not 16/24/32 bytes)
            _LOGGER.error("DC-09 account key unusable error=%s", e)
            return Verdict(SECURITY, reason="bad_key", detail=str(e))
        return self._judge_message(msg, now)

    def _unparsed(self, e: dc09.Dc09Error, now: float) -> Verdict:
        """The verdict on a frame the codec refused."""
        if isinstance(e, dc09.Dc09CrcError):
            number = e.account
            if e.crc_includes_cr and number and self.account(number) is not None:
                # a known panel deviation, not enabled for this account: say
                # how to enable it (once), and NAK as any CRC error
                self.tolerated(number.upper(), "crc_includes_cr_refused",
                               "enable with [dc09.accounts.%s] compat = "
                               "[\"crc_includes_cr\"]" % number.upper())
            return Verdict(REPLY, self.nak(None, now), reason="dc09_crc", detail=str(e))
        if isinstance(e, dc09.Dc09TimestampError):
            # decrypted (the key is right) but no or an unreadable timestamp
            m = e.message
            return Verdict(REPLY, self.nak(m.account, now), message=m, reason="dc09_time",
                           detail=str(e), account_number=m.account, seq=m.seq)
        if isinstance(e, dc09.Dc09KeyError):
            a = self._lookup(e.account.upper()) if e.account else None
            if a is None or a.protocol != "dc09":
                reason = "unknown_account"
            elif not a.key:
                reason = "unexpected_encryption"
            else:
                reason = "bad_key"
            return Verdict(SECURITY, reason=reason, detail=str(e), account_number=e.account)
        # format, oversize
        return Verdict(REPLY, self.nak(None, now), reason="dc09_format", detail=str(e))

    def _judge_message(self, msg: dc09.Dc09Message, now: float) -> Verdict:
        """The verdict on a message that parsed (and decrypted)."""
        number = msg.account
        if msg.msg_id in (dc09.ACK, dc09.NAK, dc09.DUH):
            return Verdict(IGNORE, message=msg, reason="unexpected_reply",
                           account_number=number, seq=msg.seq)
        a = self.account(number)
        if a is None:
            return Verdict(SECURITY, message=msg, reason="unknown_account",
                           detail="no DC-09 account %s" % number, account_number=number,
                           seq=msg.seq)
        if a.key and not msg.encrypted:
            # Anyone on the path can forge a clear message; an account with
            # a key reports encrypted only.
            return Verdict(SECURITY, message=msg, account=a, reason="clear_message",
                           detail="clear %s for an account with a key" % msg.msg_id,
                           account_number=number, seq=msg.seq)
        st = self.settings(number)
        for d in msg.deviations:
            self.tolerated(a.number, d)
        late = self._time_refusal(msg, a, st, now)
        if late is not None:
            return late
        if msg.bad_timestamp is not None:
            self.tolerated(a.number, "unreadable_timestamp", msg.bad_timestamp[:40])
        if msg.msg_id == dc09.NULL:
            return Verdict(LINK, message=msg, account=a, account_number=number, seq=msg.seq)
        if msg.msg_id not in (dc09.ADM_CID, dc09.SIA_DCS):
            return Verdict(REPLY, dc09.build_duh(msg), message=msg, account=a,
                           reason="dc09_unsupported", detail="ID token %s" % msg.msg_id,
                           account_number=number, seq=msg.seq)
        return Verdict(EVENT, message=msg, account=a, events=self._events(msg, a, st, now),
                       account_number=number, seq=msg.seq)

    def _time_refusal(self, msg: dc09.Dc09Message, a, st: AccountSettings,
                      now: float) -> Verdict | None:
        """The timestamp test (5.5.1.8): every encrypted message, and the
        clear ones of an account that asks for it; a NAK verdict, or None."""
        if not (msg.encrypted or st.check_clear_time):
            return None
        number = msg.account
        if msg.timestamp is None:
            return Verdict(REPLY, self.nak(number, now), message=msg, account=a,
                           reason="dc09_time",
                           detail="clear message without a readable timestamp (the "
                                  "account checks clear messages' time)",
                           account_number=number, seq=msg.seq)
        delta = msg.timestamp - self.panel_time(number, now)
        lower, upper = st.window
        if not timedelta(seconds=lower) <= delta <= timedelta(seconds=upper):
            return Verdict(REPLY, self.nak(number, now), message=msg, account=a,
                           reason="dc09_time",
                           detail="timestamp %+.0f s from receiver time"
                           % delta.total_seconds(), account_number=number, seq=msg.seq)
        return None

    def _events(self, msg: dc09.Dc09Message, a, st: AccountSettings, now: float) -> list:
        """The normalized event dicts of an accepted ADM-CID or SIA-DCS
        message, one per event, with message-level dedupe keys: the first
        event's key is the message's, the others' add "/2", "/3", ...  so a
        copy of the whole message collides on every one of them."""
        contents = content_events(msg)
        if len(contents) > MAX_EVENTS:
            rest = contents[MAX_EVENTS - 1:]
            contents = contents[:MAX_EVENTS - 1] + [EventContent(
                1, 0, 0, 0, None, "%s: %d more events: %s" % (
                    msg.msg_id, len(rest), msg.data), {})]
        key = self.recent.dedupe_key(a.number, msg.seq, content_digest(msg), now)
        ext = dc09.extended_data(msg)
        if msg.bad_timestamp is not None:
            ext["timestamp_text"] = msg.bad_timestamp
        event_time = None
        if msg.timestamp is not None:
            event_time = msg.timestamp.timestamp() - st.utc_offset_s
        out = []
        for i, c in enumerate(contents):
            e_ext = dict(ext, **c.modifiers)
            out.append({
                "account": a.number, "protocol": "dc09",
                "dedupe_key": key if i == 0 else "%s/%d" % (key, i + 1),
                "seq": msg.seq, "qualifier": c.qualifier, "code": c.code,
                "partition": min(c.partition, 99), "zone": c.zone, "user": c.user,
                "text": c.text[:MAX_TEXT] if c.text else None, "ext": e_ext or None,
                "event_time": event_time, "received_at": now, "path": 1,
            })
        return out


@dataclass
class EventContent:
    """One event of a DC-09 message in our event model's terms (what
    content_events() gives; the receiver stores it, `decode` shows it).
    ``modifiers`` are the SIA modifiers other than area and user, and the
    names given with any ('ri_name'), kept raw in the event's ``ext``."""

    qualifier: int
    code: int
    partition: int
    zone: int
    user: int | None
    text: str | None
    modifiers: dict
    sia_code: str | None = None


def content_events(msg: dc09.Dc09Message) -> list[EventContent]:
    """The events in an ADM-CID or SIA-DCS message, mapped to Contact ID.
    Content that cannot be mapped is never refused: an unknown code or
    data of another shape becomes an event with Contact ID code 0 and the
    data verbatim in its text (see the module doc)."""
    verbatim = "%s %s" % (msg.msg_id, msg.data)
    try:
        if msg.msg_id == dc09.ADM_CID:
            e = dc09.adm_cid_to_event(msg)
            known = e["code"] in contactid.CODES
            user = e["zone"] if contactid.zone_is_user(e["code"]) else None
            return [EventContent(e["qualifier"], e["code"], e["partition"], e["zone"], user,
                                 None if known else "ADM-CID " + msg.data, {})]
        sia = dc09.sia_dcs_events(msg)
        out = []
        for s in sia:
            mods = {k: v for k, v in s.modifiers.items()
                    if k not in (dc09.MOD_PARTITION, dc09.MOD_USER)}
            mods.update(("%s_name" % k, v) for k, v in s.names.items())
            # kept verbatim: the whole data of a one-event message, else the
            # event's own part of it
            own = verbatim if len(sia) == 1 else "SIA-DCS %s%s%s" % (
                s.sia_code, s.address, s.text)
            if s.code is None:
                # a SIA code with no Contact ID row
                c = EventContent(1, 0, s.partition, s.zone, s.user, own, mods, s.sia_code)
            else:  # a Contact ID row gives both code and qualifier
                c = EventContent(s.qualifier or 1, s.code, s.partition, s.zone, s.user,
                                 s.text or None, mods, s.sia_code)
            if not 0 <= c.zone <= MAX_ZONE or (c.user is not None and c.user > MAX_ZONE):
                # an address longer than any zone or user number: keep it as text
                c.zone, c.user, c.text = 0, None, own
            out.append(c)
        return out
    except dc09.Dc09Error:
        # intact but not the shape we know: store it verbatim, do not lose it
        return [EventContent(1, 0, 0, 0, None, verbatim, {})]
