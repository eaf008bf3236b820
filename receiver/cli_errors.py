"""The two ways a ``guardline-receiver`` command ends in failure, shared by
the command modules (receiver.cli, receiver.workflow_cli): its ``main``
prints the message on one line and exits with the status; and how a
listing says it was cut.  A leaf module."""

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
