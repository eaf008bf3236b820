"""What every workflow core shares: its two error families, the checks its
file loaders run, and content hashes.

A leaf: it imports nothing of the receiver's.

The two error families (after h11's Local/RemoteProtocolError):

- :class:`WorkflowConfigError`: a workflow file (plans, dispositions, a
  site) cannot be used.  The message starts with *where*: the file, then the
  plan and step, or the contact, in the words an administrator finds them
  by ("plans.toml: plan 'holdup-bank', step 3 (dispatch): target must be
  ...").  Raised at load, before anything is stored.
- :class:`ActionRefused`: a person asked for something the rules do not
  allow (skip a step without a reason, resolve with open mandatory steps,
  act on an alarm someone else handles).  The message is a sentence for
  that person; nothing was changed.
"""

from __future__ import annotations

import hashlib
import json
import tomllib

# Reasons, notes and free text an operator types: the console's note limit
# (docs/console.md, "Bounded"), so one rule holds for every text field.
MAX_TEXT_LEN = 2000
# Labels an administrator writes in a file (a step title, a contact's role):
# what fits on one line of the alarm detail.
MAX_LABEL_LEN = 120


class WorkflowConfigError(ValueError):
    """A workflow file cannot be used; ``where`` says which file and which
    part of it, the message says why."""

    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__("%s: %s" % (where, message))


class ActionRefused(Exception):
    """An operator's request the rules refuse; the message is for them."""


class NotFound(LookupError):
    """No such alarm, site, contact or note; the message says which."""


def read_toml(path: str, what: str) -> dict:
    """The parsed TOML of ``path``; any failure is a WorkflowConfigError
    naming the file (``what``: "plans file", "site file", ...)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise WorkflowConfigError(path, "no such %s" % what) from None
    except tomllib.TOMLDecodeError as e:
        raise WorkflowConfigError(path, "not valid TOML (%s)" % e) from None
    except (OSError, UnicodeDecodeError) as e:
        raise WorkflowConfigError(path, "cannot read the %s (%s)" % (what, e)) from None


def check_keys(table, allowed, where: str) -> dict:
    if not isinstance(table, dict):
        raise WorkflowConfigError(where, "must be a table")
    bad = set(table) - set(allowed)
    if bad:
        raise WorkflowConfigError(where, "unknown key(s) %s (allowed: %s)" % (
            ", ".join(sorted(bad)), ", ".join(sorted(allowed))))
    return table


def label(v, where: str, max_len: int = MAX_LABEL_LEN) -> str:
    """A non-empty one-line text of at most ``max_len`` characters."""
    if not isinstance(v, str) or not v.strip():
        raise WorkflowConfigError(where, "must be a non-empty text")
    if len(v) > max_len:
        raise WorkflowConfigError(where, "has %d characters; at most %d" % (len(v), max_len))
    if any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in v):
        raise WorkflowConfigError(where, "holds a control character")
    return v.strip()


def integer(v, where: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise WorkflowConfigError(where, "must be a whole number from %d to %d" % (lo, hi))
    return v


def boolean(v, where: str) -> bool:
    if not isinstance(v, bool):
        raise WorkflowConfigError(where, "must be true or false")
    return v


def one_of(v, choices, where: str) -> str:
    if v not in choices:
        raise WorkflowConfigError(where, "must be one of %s" % ", ".join(choices))
    return v


def reason_text(reason, what: str) -> str:
    """An operator's reason or note: required, trimmed, bounded."""
    if not isinstance(reason, str) or not reason.strip():
        raise ActionRefused("%s needs a reason" % what)
    reason = reason.strip()
    if len(reason) > MAX_TEXT_LEN:
        raise ActionRefused("a reason has at most %d characters" % MAX_TEXT_LEN)
    return reason


def content_hash(obj) -> str:
    """SHA-256 (hex) of ``obj``'s canonical JSON: the same content gives the
    same hash on every receiver, whatever the file's layout or comments."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

