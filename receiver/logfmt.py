"""Structured logging: ``key=value`` lines (logfmt) for the receiver.

Modules log with ``_LOGGER = logging.getLogger(__name__)`` and %-style
messages whose text is already ``key=value`` pairs, always with the
account they concern, e.g.::

    _LOGGER.warning("security event account=%s peer=%s reason=%s", ...)

:func:`kv` quotes values that need it; :class:`LogfmtFormatter` prefixes
each line with ``ts=… level=… logger=…`` so a line is greppable and
machine-parsable.  :func:`setup` installs it on the root logger (the CLI).
"""

from __future__ import annotations

import logging
import sys
import time


def q(value) -> str:
    """One logfmt value: quoted when it holds spaces, quotes or '='."""
    s = "" if value is None else str(value)
    if s == "" or any(c in s for c in ' "=\n\t'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


def kv(**fields) -> str:
    return " ".join("%s=%s" % (k, q(v)) for k, v in fields.items())


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
    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        text, fields = split_message(record.getMessage())
        line = "ts=%s.%03dZ level=%s logger=%s msg=%s" % (
            t, int(record.msecs), record.levelname.lower(), record.name, q(text))
        if fields:
            line += " " + fields
        if record.exc_info:
            line += " exc=" + q(self.formatException(record.exc_info))
        return line


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


def setup(level: str = "INFO", stream=None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_guardline_logfmt", False):  # ours from an earlier call only
            root.removeHandler(h)
    h = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    h._guardline_logfmt = True
    h.setFormatter(LogfmtFormatter())
    root.addHandler(h)
    root.setLevel(level.upper())
