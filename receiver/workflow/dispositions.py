"""Dispositions: how an alarm ended, from a configurable list
(examples/dispositions.toml is the annotated reference).

Resolving an alarm needs one.  Each disposition has a code (the file's key,
stored on the alarm), a label people read ("False alarm: user error"), and
a report category (:data:`CATEGORIES`): ``false``, ``real``, ``test`` or
``other``.  The centre's reports (receiver.rules.reports, issue 18) count
false alarms from it: :meth:`Dispositions.codes_in` gives the codes of a
category, and the alarm row keeps the category it was resolved with, so a
later edit of the file does not rewrite history.

Options per disposition: ``classes`` (offered only for alarms of these
classes; left out: all), ``note_required`` (the operator must say more),
``pick = false`` (never offered in the picker: used only by the receiver
itself, through ``[auto]``).

``[auto]`` names the dispositions the receiver applies by itself:
``restored`` (a trouble resolved when it restores, issue 18) and
``cancelled_by_user`` (a panel's 406 cancel report, issue 22); both are
required, so those features never have to guess a code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from protocol import contactid
from receiver.workflow.common import (MAX_TEXT_LEN, ActionRefused, WorkflowConfigError,
                                      boolean, check_keys, label, one_of, read_toml)

FALSE = "false"
REAL = "real"
TEST = "test"
OTHER = "other"
CATEGORIES = (FALSE, REAL, TEST, OTHER)
AUTO_KEYS = ("restored", "cancelled_by_user")
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


@dataclass(frozen=True)
class Disposition:
    code: str
    label: str
    category: str
    classes: frozenset = frozenset()  # empty: every class
    note_required: bool = False
    pick: bool = True

    def offered_for(self, event_class: str) -> bool:
        return self.pick and (not self.classes or event_class in self.classes)

    def to_json(self) -> dict:
        return {"code": self.code, "label": self.label, "category": self.category,
                "classes": sorted(self.classes), "note_required": self.note_required,
                "pick": self.pick}


@dataclass(frozen=True)
class Dispositions:
    items: tuple  # in the file's order (the picker's order)
    auto: dict = field(default_factory=dict)  # AUTO_KEYS -> code
    source: str = ""

    def get(self, code: str) -> Disposition | None:
        for d in self.items:
            if d.code == code:
                return d
        return None

    def codes_in(self, category: str) -> frozenset:
        """The codes of one category (``false``: the reports' false alarms)."""
        return frozenset(d.code for d in self.items if d.category == category)

    def offered(self, event_class: str) -> list[Disposition]:
        """The picker's list for an alarm of ``event_class``."""
        return [d for d in self.items if d.offered_for(event_class)]

    def choose(self, code, event_class: str, note: str | None) -> Disposition:
        """The disposition an operator picked, checked; raises ActionRefused."""
        if not isinstance(code, str) or not code:
            raise ActionRefused("resolving needs a disposition (how did the alarm end?)")
        d = self.get(code)
        if d is None or not d.pick:
            raise ActionRefused("%r is not a disposition an operator can pick" % code)
        if not d.offered_for(event_class):
            raise ActionRefused("'%s' is not a disposition for %s alarms" % (
                d.label, contactid.CLASS_LABELS.get(event_class, event_class)))
        if d.note_required and not (isinstance(note, str) and note.strip()):
            raise ActionRefused("'%s' needs a note saying what happened" % d.label)
        if isinstance(note, str) and len(note) > MAX_TEXT_LEN:
            raise ActionRefused("a note has at most %d characters" % MAX_TEXT_LEN)
        return d

    def automatic(self, key: str) -> Disposition:
        """The disposition the receiver applies for ``key`` (AUTO_KEYS)."""
        d = self.get(self.auto[key])
        if d is None:  # parse() checked every [auto] code; a hand-made list may not
            raise KeyError("no disposition %r for %s" % (self.auto[key], key))
        return d


# What a receiver without a dispositions file offers.
BUILTIN = {
    "dispositions": {
        "false": {"label": "False alarm", "category": FALSE},
        "real": {"label": "Real alarm", "category": REAL},
        "test": {"label": "Test", "category": TEST},
        "other": {"label": "Other (say what in the note)", "category": OTHER,
                  "note_required": True},
        "restored": {"label": "Restored: the condition cleared by itself", "category": OTHER,
                     "pick": False},
        "cancelled-user": {"label": "Cancelled by a user at the panel", "category": FALSE,
                           "pick": False},
    },
    "auto": {"restored": "restored", "cancelled_by_user": "cancelled-user"},
}


def builtin() -> Dispositions:
    """The list of a receiver with no dispositions file."""
    return parse(BUILTIN, "built-in dispositions")


def load(path: str) -> Dispositions:
    return parse(read_toml(path, "dispositions file"), path)


def parse(doc: dict, source: str = "dispositions file") -> Dispositions:
    check_keys(doc, ("dispositions", "auto"), source)
    raw = doc.get("dispositions")
    if not isinstance(raw, dict) or not raw:
        raise WorkflowConfigError(source, "defines no dispositions ([dispositions.CODE] tables)")
    items = []
    for code, d in raw.items():
        w = "%s: disposition '%s'" % (source, code)
        if not CODE_RE.match(code):
            raise WorkflowConfigError(w, "a code is 1-40 lower-case letters, digits and _ . -")
        check_keys(d, ("label", "category", "classes", "note_required", "pick"), w)
        classes = d.get("classes", [])
        if not isinstance(classes, list):
            raise WorkflowConfigError(w + ": classes", "must be a list of alarm classes")
        for c in classes:
            one_of(c, contactid.CLASSES, w + ": classes")
        items.append(Disposition(
            code, label(d.get("label"), w + ": label"),
            one_of(d.get("category"), CATEGORIES, w + ": category"), frozenset(classes),
            boolean(d.get("note_required", False), w + ": note_required"),
            boolean(d.get("pick", True), w + ": pick")))
    if not any(d.pick for d in items):
        raise WorkflowConfigError(source, "no disposition can be picked by an operator")
    auto = doc.get("auto")
    check_keys(auto if auto is not None else {}, AUTO_KEYS, source + ": [auto]")
    codes = {d.code for d in items}
    out = {}
    for key in AUTO_KEYS:
        v = (auto or {}).get(key)
        if v not in codes:
            raise WorkflowConfigError("%s: [auto] %s" % (source, key),
                                      "must name a disposition of this file (got %r)" % (v,))
        out[key] = v
    return Dispositions(tuple(items), out, source)

