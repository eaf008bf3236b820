"""The two ways a ``guardline-receiver`` command ends in failure, shared by
the command modules (receiver.cli, receiver.workflow_cli): its ``main``
prints the message on one line and exits with the status; how a listing
says it was cut; and writing a command's output to its ``-o`` file.  A
leaf module."""

import sys


class UsageError(Exception):
    """Exit 2 with this message: a bad command line or file."""


class Failure(Exception):
    """Exit 1 with this message: the command could not be done (not found,
    refused, no store, store error)."""


def more(limit: int, what: str, how: str) -> None:
    """Say on stderr that a listing stopped at its limit: a cut list must
    not read as the whole."""
    print("guardline-receiver: the first %d %s are shown; there may be more (%s)"
          % (limit, what, how), file=sys.stderr)


def write_out(text: str, path: str | None, what: str | None = None) -> None:
    """``text`` to the file ``path`` (``-o``; said so when ``what`` names
    it), else to standard output; a file that cannot be written is a
    :class:`Failure`."""
    if not path:
        sys.stdout.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise Failure("cannot write %s: %s" % (path, e.strerror or e)) from None
    if what:
        print("%s written to %s" % (what, path))
