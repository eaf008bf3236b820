"""A site's contacts, its call lists, and passcode checks on a call.

Per site (an account): contacts with a name, a role, phones, a passcode
and a duress passcode (both stored only as argon2id hashes), and the hours
they can be reached (``available``, in the site's time zone); call lists
per alarm class, each an order of contact names (``default`` for the
classes without one).  examples/sites/*.toml are annotated site files.

Nobody is called by the receiver: an operator calls, the console gives the
numbers (``tel:`` links) and records each outcome (:data:`OUTCOMES`):

=================== ======================= =============================
outcome             recorded by             what follows (:data:`EFFECTS`)
=================== ======================= =============================
``reached``         the operator's button   the contact was reached
``no_answer``       the operator's button   call the next one
``wrong_number``    the operator's button   call the next one; fix the data
``passcode_correct`` :func:`verify_passcode` completes the plan's passcode step
``passcode_wrong``  :func:`verify_passcode` a try counted (at most 3 per contact
                                            and alarm: receiver.workflow.handling)
``duress``          :func:`verify_passcode` **hold-up handling at once**
=================== ======================= =============================

The three passcode outcomes exist only as the result of checking what the
operator typed against the contact's hashes: no request can claim them.

Passcode invariants:

- A passcode is never stored, logged, returned or put in an audit row:
  only its argon2id hash (argon2-cffi's defaults, the console passwords'
  parameters, RFC 9106).  A site file holds hashes, never passcodes.
- A check always verifies against *both* hashes (a dummy one when a
  contact has no duress passcode), so its cost does not tell which matched;
  argon2's own comparison is constant time.  Duress wins if both match.
- Before hashing and checking, a passcode is normalised as people say it
  on the phone (:func:`normalise_passcode`: Unicode NFKC, case folded,
  spaces and hyphens dropped): "Tulip-42" and "tulip 42" are one passcode.
  The hashes guard a stolen database against reading the passcodes; a
  short passcode stays guessable offline, so ask for a phrase (at least
  :data:`MIN_PASSCODE_LEN` characters).
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from protocol import contactid
from receiver.workflow import notes as _notes
from receiver.workflow.common import (ActionRefused, WorkflowConfigError, check_keys, label,
                                      read_toml)

REACHED = "reached"
NO_ANSWER = "no_answer"
WRONG_NUMBER = "wrong_number"
PASSCODE_CORRECT = "passcode_correct"
PASSCODE_WRONG = "passcode_wrong"
DURESS = "duress"
OUTCOMES = (REACHED, NO_ANSWER, WRONG_NUMBER, PASSCODE_CORRECT, PASSCODE_WRONG, DURESS)
# What an operator records with a button; the rest only come from verify_passcode.
RECORDED = (REACHED, NO_ANSWER, WRONG_NUMBER)
VERIFIED = (PASSCODE_CORRECT, PASSCODE_WRONG, DURESS)


@dataclass(frozen=True)
class Effect:
    reached: bool  # a person answered
    completes_passcode_step: bool = False
    counts_as_try: bool = False  # a wrong passcode
    escalate_to: str | None = None  # an alarm class to raise at once


# EFFECTS[outcome]: what the outcome means for the alarm.
EFFECTS = {
    REACHED: Effect(reached=True),
    NO_ANSWER: Effect(reached=False),
    WRONG_NUMBER: Effect(reached=False),
    PASSCODE_CORRECT: Effect(reached=True, completes_passcode_step=True),
    PASSCODE_WRONG: Effect(reached=True, counts_as_try=True),
    # A contact answering under threat gives the duress passcode: the
    # operator must not let on, and the site gets hold-up handling now
    # (a new hold-up alarm, routed to the police: receiver.workflow.handling).
    DURESS: Effect(reached=True, escalate_to="holdup"),
}

# At least 4 characters after normalising (a 4-digit PIN is the shortest a
# centre uses); at most 64 (a phrase; keeps argon2's input small).
MIN_PASSCODE_LEN = 4
MAX_PASSCODE_LEN = 64
# A site's contacts: a bank branch has a dozen key holders at most; this
# bounds what one file or one request adds.
MAX_CONTACTS = 50
MAX_PHONES = 5
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(r"^\s*(?P<days>[a-z,\-]+)\s+(?P<start>\d\d):(?P<sm>\d\d)\s*-\s*"
                        r"(?P<end>\d\d):(?P<em>\d\d)\s*$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()./-]{2,30}$")
_DROPPED = re.compile(r"[\s\-\u2010-\u2015]+")

# argon2id with argon2-cffi's defaults (RFC 9106: t=3, m=64 MiB, p=4), as
# console passwords (receiver.web.users).
HASHER = argon2.PasswordHasher()


@functools.cache
def _dummy_hash(hasher: argon2.PasswordHasher) -> str:
    """Checked against when a contact has no duress passcode, so a check
    costs the same either way (made once per hasher, on first use, with
    its parameters)."""
    return hasher.hash("no duress passcode on file")


# -- passcodes ------------------------------------------------------------------------------


def normalise_passcode(passcode) -> str:
    """As said on the phone: NFKC, case folded, no spaces or hyphens.
    Raises ActionRefused (without echoing the passcode) when unusable."""
    if not isinstance(passcode, str):
        raise ActionRefused("a passcode is text")
    p = _DROPPED.sub("", unicodedata.normalize("NFKC", passcode).casefold())
    if not MIN_PASSCODE_LEN <= len(p) <= MAX_PASSCODE_LEN:
        raise ActionRefused("a passcode has %d to %d characters (spaces and hyphens not "
                            "counted)" % (MIN_PASSCODE_LEN, MAX_PASSCODE_LEN))
    return p


def hash_passcode(passcode: str, hasher: argon2.PasswordHasher = HASHER) -> str:
    """argon2id hash of the normalised passcode (blocking, ~0.15 s, 64 MiB:
    the edge runs it in a worker thread, as console passwords)."""
    return hasher.hash(normalise_passcode(passcode))


def passcode_hashes(passcode: str, duress: str | None,
                    hasher: argon2.PasswordHasher = HASHER) -> tuple[str, str | None]:
    """(passcode hash, duress hash) for a contact; the two must differ."""
    if duress is not None and normalise_passcode(duress) == normalise_passcode(passcode):
        raise ActionRefused("the duress passcode must differ from the passcode")
    return hash_passcode(passcode, hasher), (None if duress is None
                                             else hash_passcode(duress, hasher))


def _matches(stored: str, given: str, hasher: argon2.PasswordHasher) -> bool:
    try:
        return hasher.verify(stored, given)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_passcode(contact: "Contact", given,
                    hasher: argon2.PasswordHasher = HASHER) -> str:
    """PASSCODE_CORRECT, PASSCODE_WRONG or DURESS for what a contact said
    (blocking: two argon2 verifies, always both)."""
    if contact.passcode_hash is None:
        raise ActionRefused("%s has no passcode on file: verify the caller another way and "
                            "record it on the step" % contact.name)
    try:
        p = normalise_passcode(given)
    except ActionRefused:
        p = ""  # too short or long: wrong, at the same cost
    duress = _matches(contact.duress_hash or _dummy_hash(hasher), p, hasher) and \
        contact.duress_hash is not None
    ok = _matches(contact.passcode_hash, p, hasher)
    if duress:
        return DURESS
    return PASSCODE_CORRECT if ok else PASSCODE_WRONG


# -- contacts and availability -----------------------------------------------------------


@dataclass(frozen=True)
class Phone:
    label: str  # "mobile", "office", "" when the file gives a bare number
    number: str  # as written: "+00 555 0101"

    @property
    def tel(self) -> str:
        """RFC 3966 ``tel:`` URI: the digits, with the leading + kept."""
        n = self.number.strip()
        return "tel:" + ("+" if n.startswith("+") else "") + re.sub(r"[^0-9]", "", n)


@dataclass(frozen=True)
class Window:
    """When a contact can be reached: days of the week (0 = Monday), from
    ``start`` to ``end`` minutes after midnight, local time.  ``end`` below
    ``start`` runs past midnight into the next day."""

    days: frozenset
    start: int
    end: int
    text: str  # as written: "mon-fri 08:00-18:00"

    def contains(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        return (weekday in self.days and minute >= self.start) or \
            ((weekday - 1) % 7 in self.days and minute < self.end)


def parse_window(text, where: str) -> Window:
    """'mon-fri 08:00-18:00', 'sat,sun 09:00-13:00', 'daily 22:00-06:00'
    (day names in any case)."""
    m = _WINDOW_RE.match(text.lower()) if isinstance(text, str) else None
    if m is None:
        raise WorkflowConfigError(where, "%r is not a time window like \"mon-fri 08:00-18:00\""
                                  % (text,))
    days: set = set()
    for part in m.group("days").split(","):
        if part == "daily":
            days.update(range(7))
            continue
        a, _, b = part.partition("-")
        if a not in DAYS or (b and b not in DAYS):
            raise WorkflowConfigError(where, "%r: days are %s or daily" % (text, ", ".join(DAYS)))
        i, j = DAYS.index(a), DAYS.index(b or a)
        days.update(range(i, j + 1) if i <= j else list(range(i, 7)) + list(range(0, j + 1)))
    sh, sm, eh, em = (int(m.group(k)) for k in ("start", "sm", "end", "em"))
    if sh > 23 or sm > 59 or eh > 24 or em > 59 or (eh == 24 and em):
        raise WorkflowConfigError(where, "%r: a time is 00:00 to 24:00" % text)
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end % 1440 and not (start == 0 and end == 1440):
        raise WorkflowConfigError(where, "%r is empty; for all day write 00:00-24:00" % text)
    return Window(frozenset(days), start, end, text.strip())


@dataclass(frozen=True)
class Contact:
    name: str
    role: str = ""
    phones: tuple = ()
    passcode_hash: str | None = None
    duress_hash: str | None = None
    available: tuple = ()  # Windows; empty: at any time

    @property
    def has_passcode(self) -> bool:
        return self.passcode_hash is not None

    def available_at(self, now: float, time_zone: str) -> bool:
        if not self.available:
            return True
        t = _dt.datetime.fromtimestamp(now, ZoneInfo(time_zone))
        return any(w.contains(t.weekday(), t.hour * 60 + t.minute) for w in self.available)

    def availability_words(self) -> str:
        return "at any time" if not self.available else ", ".join(w.text for w in self.available)

    def to_json(self) -> dict:
        """What the API and the console get: never a hash."""
        return {"name": self.name, "role": self.role,
                "phones": [{"label": p.label, "number": p.number, "tel": p.tel}
                           for p in self.phones],
                "has_passcode": self.has_passcode,
                "has_duress_passcode": self.duress_hash is not None,
                "available": [w.text for w in self.available]}


@dataclass(frozen=True)
class Site:
    account: str
    time_zone: str
    contacts: tuple = ()
    call_orders: dict = field(default_factory=dict)  # class | "default" -> (names)
    notes: tuple = ()  # SiteNotes from the file
    source: str = ""

    def contact(self, name: str) -> Contact:
        for c in self.contacts:
            if c.name == name:
                return c
        raise ActionRefused("site %s has no contact named %s" % (self.account, name))


# -- call lists ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallEntry:
    position: int  # in the list as written (1-based)
    contact: Contact
    available: bool


@dataclass(frozen=True)
class CallList:
    requested: str  # the class asked for ("holdup") or "default"
    order: str  # the list used: requested, "default", or "" (all contacts)
    entries: tuple

    def words(self) -> str:
        def name(k):
            return "default" if k == "default" else contactid.CLASS_LABELS.get(k, k)
        if self.order == self.requested:
            return "the %s call list" % name(self.order)
        if self.order:
            return "the %s call list (the site has no %s list)" % (name(self.order),
                                                                   name(self.requested))
        return "all the site's contacts (the site has no call list)"


def call_list(site: Site, requested: str, now: float) -> CallList:
    """The contacts to call for ``requested`` (an alarm class or
    "default"): the site's list for it, else its default list, else every
    contact; those reachable now first, in list order, then the others."""
    if requested in site.call_orders:
        order, names = requested, site.call_orders[requested]
    elif "default" in site.call_orders:
        order, names = "default", site.call_orders["default"]
    else:
        order, names = "", tuple(c.name for c in site.contacts)
    entries = [CallEntry(i + 1, site.contact(n), site.contact(n).available_at(now, site.time_zone))
               for i, n in enumerate(names)]
    entries.sort(key=lambda e: (not e.available, e.position))
    return CallList(requested, order, tuple(entries))


@dataclass(frozen=True)
class CallRecord:
    """One call an operator made (a row of ``alarm_calls``)."""

    alarm_id: int
    at: float
    by: str
    contact: str
    phone: str
    outcome: str


def next_to_call(cl: CallList, calls) -> CallEntry | None:
    """The first entry of the list not yet called on this alarm (None:
    everyone was tried)."""
    tried = {c.contact for c in calls}
    for e in cl.entries:
        if e.contact.name not in tried:
            return e
    return None


# -- site files ------------------------------------------------------------------------------


def _hash(v, where: str) -> str:
    if not isinstance(v, str) or not v.startswith("$argon2id$"):
        raise WorkflowConfigError(where, "must be an argon2id hash ($argon2id$...)")
    try:
        argon2.extract_parameters(v)
    except (InvalidHashError, ValueError):
        raise WorkflowConfigError(where, "is not a valid argon2id hash") from None
    return v


def _phones(v, where: str) -> tuple:
    if isinstance(v, str):
        v = [v]  # one number written without the list
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_PHONES:
        raise WorkflowConfigError(where, "must list 1 to %d phones" % MAX_PHONES)
    out = []
    for i, p in enumerate(v):
        w = "%s[%d]" % (where, i + 1)
        if isinstance(p, str):
            p = {"number": p}
        check_keys(p, ("label", "number"), w)
        number = p.get("number")
        if not isinstance(number, str) or not _PHONE_RE.match(number.strip()) or \
                sum(ch.isdigit() for ch in number) < 3:
            raise WorkflowConfigError(w, "%r is not a phone number (digits, spaces, "
                                      "( ) . / -, an optional leading +)" % (number,))
        out.append(Phone(label(p["label"], w + ": label", 40) if "label" in p else "",
                         number.strip()))
    return tuple(out)


def _contact(c, where: str) -> Contact:
    if isinstance(c, dict) and ("passcode" in c or "duress_passcode" in c):
        raise WorkflowConfigError(where, "a passcode is never written in a file: give "
                                  "passcode_hash (set it with `guardline-receiver sites "
                                  "passcode`)")
    check_keys(c, ("name", "role", "phones", "passcode_hash", "duress_hash", "available"), where)
    name = label(c.get("name"), where + ": name", 80)
    w = "%s (%s)" % (where, name)
    duress = _hash(c["duress_hash"], w + ": duress_hash") if "duress_hash" in c else None
    code = _hash(c["passcode_hash"], w + ": passcode_hash") if "passcode_hash" in c else None
    if duress is not None and code is None:
        raise WorkflowConfigError(w, "a duress passcode needs a passcode too")
    avail = c.get("available", [])
    if not isinstance(avail, list):
        raise WorkflowConfigError(w + ": available", "must be a list of windows")
    return Contact(name, label(c["role"], w + ": role") if "role" in c else "",
                   _phones(c.get("phones"), w + ": phones"), code, duress,
                   tuple(parse_window(x, w + ": available") for x in avail))


def parse_site(doc: dict, source: str = "site file", loaded_at: float = 0.0,
               loaded_by: str = "site file") -> Site:
    """A Site from a parsed site file; every error names the file and the
    contact or list."""
    check_keys(doc, ("account", "time_zone", "contacts", "call_orders", "notes"), source)
    account = doc.get("account")
    if not isinstance(account, str) or not account.strip() or len(account) > 16:
        raise WorkflowConfigError(source + ": account", "must be the account number as a "
                                  "string (account = \"1001\")")
    tzname = doc.get("time_zone")
    try:
        tz = ZoneInfo(tzname) if isinstance(tzname, str) and tzname else None
    except (ZoneInfoNotFoundError, ValueError):
        tz = None
    if tz is None:
        raise WorkflowConfigError(source + ": time_zone", "must be an IANA time zone such as "
                                  "\"Europe/Vienna\" (got %r)" % (tzname,))
    raw = doc.get("contacts", [])
    if not isinstance(raw, list) or len(raw) > MAX_CONTACTS:
        raise WorkflowConfigError(source + ": contacts", "must be at most %d [[contacts]]"
                                  % MAX_CONTACTS)
    contacts = tuple(_contact(c, "%s: contact %d" % (source, i + 1)) for i, c in enumerate(raw))
    seen: set = set()
    for c in contacts:
        if c.name in seen:
            raise WorkflowConfigError(source, "two contacts are named %s" % c.name)
        seen.add(c.name)
    orders = {}
    co = doc.get("call_orders", {})
    check_keys(co, contactid.CLASSES + ("default",), source + ": [call_orders]")
    for key, names in co.items():
        w = "%s: [call_orders] %s" % (source, key)
        if not isinstance(names, list) or not names:
            raise WorkflowConfigError(w, "must list contact names")
        for n in names:
            if n not in seen:
                raise WorkflowConfigError(w, "names no contact of this site: %r" % (n,))
        if len(set(names)) != len(names):
            raise WorkflowConfigError(w, "names a contact twice")
        orders[key] = tuple(names)
    notes = _notes.parse_file_notes(doc.get("notes", []), account, tz, source + ": notes",
                                    loaded_by, loaded_at)
    return Site(account, str(tzname), contacts, orders, notes, source)


def load_site(path: str, loaded_at: float = 0.0, loaded_by: str = "site file") -> Site:
    return parse_site(read_toml(path, "site file"), path, loaded_at, loaded_by)
