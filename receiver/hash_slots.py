"""One bound on argon2 work for the whole receiver: console logins and
passwords (receiver.web.users) and site passcodes (receiver.workflow_service)
take a slot each, so a burst of either cannot take every core and all the
memory from the event path.  A leaf module."""

from __future__ import annotations

import threading

# argon2id with m=64 MiB: two at once on a 2-core receiver bound the memory
# a login or passcode burst can take to 128 MiB and leave a core for the
# event path.
MAX_CONCURRENT_HASHES = 2

slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


def bounded(fn, *args):
    """``fn(*args)`` (blocking: call it in a worker thread) in a slot."""
    with slots:
        return fn(*args)
