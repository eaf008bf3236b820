"""Structured logging: ``key=value`` lines (logfmt) for the receiver.

Modules log with ``_LOGGER = logging.getLogger(__name__)`` and %-style
messages whose text is already ``key=value`` pairs, always with the
account they concern, e.g.::

    _LOGGER.warning("security event account=%s peer=%s reason=%s", ...)

:func:`kv` quotes values that need it; :class:`LogfmtFormatter` prefixes
each line with ``ts=… level=… logger=…`` so a line is greppable and
machine-parsable.  :func:`setup` installs it on the root logger (the CLI).

Invariants (what an attacker who controls a logged value cannot do):

- One record is one line.  Every value interpolated into a message is
  quoted with :func:`q` when it holds a space, ``"``, ``=`` or any control
  character (C0, DEL, C1, Unicode line/paragraph separators, bidi
  controls), and those characters are written as escapes (``\\n``,
  ``\\x1b``, ``\\u2028``), so a login name holding ``\\n ts=… level=error``
  cannot forge a line or a field.  A value the caller already quoted with
  :func:`q` (a :class:`Quoted`) is left alone.  As a last net, any control character still in
  the finished line (from a message template or a ``%r``) is escaped too.
- The volume is bounded: each message template (logger + format string)
  passes at most :data:`LOG_LINES_PER_S` lines per second after a burst of
  :data:`LOG_BURST`; the rest are counted and the next line of that
  template carries ``suppressed=N``.  What a flood of unauthenticated
  clients can make the receiver write is therefore a bounded rate, and
  the log's retention is the log system's (docs/receiver.md, "Retention").
"""

from __future__ import annotations

import logging
import re
import sys
import time
import weakref
from collections import OrderedDict

from receiver.ratelimit import RateLimit

# Lines per second per message template, after a burst.  A template that
# one peer can trigger (a refused connection, a failed login, an accept
# error with its traceback) stays near 10 lines/s (~2.5 kB/s, ~200 MB a
# day at the very worst) instead of the 700 lines/s a flood produced; a
# burst of 100 keeps every line of an ordinary busy minute.
LOG_LINES_PER_S = 10.0
LOG_BURST = 100.0
# Message templates tracked at most (the receiver has a few hundred);
# past this the least recently seen is forgotten, with its count.
MAX_TEMPLATES = 1000

# Characters that must never reach a log line raw: C0 controls (newline,
# carriage return, escape, ...), DEL, C1 controls (NEL U+0085 ends a line
# for some readers), the Unicode line and paragraph separators, and the
# bidi controls that make a viewer show text in another order.
_CONTROL = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_CONTROL_RE = re.compile("[%s]" % _CONTROL)
_NEEDS_QUOTES_RE = re.compile('[ "=\\\\%s]' % _CONTROL)
_NAMED = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    n = ord(c)
    return "\\x%02x" % n if n < 0x100 else "\\u%04x" % n


def escape_controls(s: str) -> str:
    """``s`` with every control character written as an escape."""
    return _CONTROL_RE.sub(lambda m: _escape_char(m.group()), s)


class Quoted(str):
    """Text :func:`q` made safe: the formatter passes it through as it is.
    Known by its type, not by its look: a login name typed as ``"admin"``
    is still quoted (``user="\\"admin\\""``)."""


def q(value) -> str:
    """One logfmt value: quoted when it is empty or holds a space, a quote,
    '=', a backslash or a control character; inside the quotes, quotes,
    backslashes and control characters are escaped."""
    if isinstance(value, Quoted):
        return value
    s = "" if value is None else str(value)
    if s == "" or _NEEDS_QUOTES_RE.search(s):
        s = '"' + re.sub('["\\\\%s]' % _CONTROL, lambda m: _escape_char(m.group()), s) + '"'
    return Quoted(s)


def kv(**fields) -> str:
    return " ".join("%s=%s" % (k, q(v)) for k, v in fields.items())


def _safe_arg(a):
    """A message argument as it may go into a line: numbers and None as
    they are; anything whose text needs quoting, quoted (unless the caller
    already did)."""
    if a is None or isinstance(a, (int, float, Quoted)):
        return a
    s = a if isinstance(a, str) else str(a)
    if not _NEEDS_QUOTES_RE.search(s):
        return a
    return q(s)


def safe_message(record: logging.LogRecord) -> str:
    """The record's message with every argument made safe (see the module
    docstring); control characters in the result are escaped."""
    args = record.args
    try:
        if isinstance(args, dict):
            msg = str(record.msg) % {k: _safe_arg(v) for k, v in args.items()}
        elif args:
            msg = str(record.msg) % tuple(_safe_arg(a) for a in args)
        else:
            msg = str(record.msg)
    except (TypeError, ValueError, KeyError):
        # a bad call (wrong argument count or type): still one honest line
        msg = "%s args=%s" % (record.msg, q(repr(args)))
    return escape_controls(msg)


def split_message(message: str) -> tuple[str, str]:
    """'security event account=7 peer=x' -> ('security event', 'account=7 peer=x'):
    the words before the first key=value pair are the message, the rest
    is already logfmt."""
    words = message.split(" ")
    for i, w in enumerate(words):
        if "=" in w and not w.startswith("="):
            return " ".join(words[:i]), " ".join(words[i:])
    return message, ""


class LogfmtFormatter(logging.Formatter):
    def __init__(self, tag: str = ""):
        super().__init__()
        self.tag = tag  # fields every line ends with (a worker's "worker=2")

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        text, fields = split_message(safe_message(record))
        line = "ts=%s.%03dZ level=%s logger=%s msg=%s" % (
            t, int(record.msecs), record.levelname.lower(), q(record.name), q(text))
        if fields:
            line += " " + fields
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            line += " suppressed=%d" % suppressed
        if record.exc_info:
            line += " exc=" + q(self.formatException(record.exc_info))
        if self.tag:
            line += " " + self.tag
        return line


class FloodFilter(logging.Filter):
    """At most ``rate`` lines per second per message template (logger name
    and format string, not the formatted text: one template flooded with
    many peers is still one template); the count of what was held back
    rides on the template's next line as ``record.suppressed``."""

    def __init__(self, rate: float = LOG_LINES_PER_S, burst: float = LOG_BURST,
                 max_templates: int = MAX_TEMPLATES, clock=time.monotonic):
        super().__init__()
        self.rate = rate
        self.burst = burst
        self.max_templates = max_templates
        self.clock = clock
        self._buckets: OrderedDict[tuple, list] = OrderedDict()  # key -> [bucket, held]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        entry = self._buckets.get(key)
        if entry is None:
            entry = self._buckets[key] = [RateLimit(self.rate, self.burst, now), 0]
            while len(self._buckets) > self.max_templates:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if not entry[0].allow(now):
            entry[1] += 1
            return False
        if entry[1]:
            record.suppressed = entry[1]
            entry[1] = 0
        return True


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not
    the one there was at setup: a CLI run in-process (tests, the demo) must
    not leave a handler bound to a stream that has since been closed."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


# The handlers setup() and setup_messages() installed (weakly: a handler
# someone else removed and dropped is forgotten).
_INSTALLED: "weakref.WeakSet[logging.Handler]" = weakref.WeakSet()


def _install(h: logging.Handler) -> logging.Handler:
    """Make ``h`` the root's handler in place of ours from an earlier call."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if old in _INSTALLED:  # ours from an earlier call only
            root.removeHandler(old)
    _INSTALLED.add(h)
    root.addHandler(h)
    return h


def setup(level: str = "INFO", stream=None, tag: str = "") -> logging.Handler:
    """Log in logfmt on ``stream`` (stderr); ``tag``: fields for every line."""
    h = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    h.setFormatter(LogfmtFormatter(tag))
    h.addFilter(FloodFilter())
    _install(h)
    logging.getLogger().setLevel(level.upper())
    return h


def setup_messages(prog: str) -> logging.Handler:
    """For a command that is not a server (guardline-receiver accounts,
    alarms, ...): warnings and errors logged on its way (a store created, a
    store others can read) as plain ``PROG: message`` lines on stderr, read
    as the command's own output."""
    h = _CurrentStderr()
    h.setLevel(logging.WARNING)
    h.setFormatter(logging.Formatter(prog + ": %(message)s"))
    return _install(h)
