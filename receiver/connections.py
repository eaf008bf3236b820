"""Which panel holds which authenticated stream to this receiver: the
connection registry the listeners keep and the rest of the receiver asks.

    registry.register(link, "1234")   # a listener: link now speaks for 1234
    registry.unregister(link)          # a listener: link closed
    registry.stream_for("1234")        # remote commands: the panel's stream
    registry.listing()                 # the console: who is connected

A stream speaks for every account that had a frame accepted on it (a
serial trunk carries several panels; a panel's own TCP connection, one),
the last :data:`ACCOUNTS_PER_STREAM` of them; a listener registers a link
again whenever the account of its frames changes.  Only streams register:
a UDP panel is not listening between its datagrams, and has no connection
to show.

Invariants: a closed link is never returned (listeners unregister on close,
and ``stream_for`` skips a link that says it is closed); a link is listed
under at most ``ACCOUNTS_PER_STREAM`` accounts; every operation is
O(links of one account) or O(accounts of one link).  A leaf module: no I/O,
nothing of the receiver's imported.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

# Accounts one stream is listed under at most: a serial trunk or a
# concentrator carries a few dozen panels (as protocol.session's
# VOUCHED_PER_CONNECTION, the accounts a stream is remembered for).
ACCOUNTS_PER_STREAM = 256


class Stream(Protocol):
    """What the registry reads of a registered link."""

    kind: str  # the listener's kind: "tcp", "serial"
    peer: str
    opened: float  # Unix seconds
    last_rx: float  # Unix seconds of the last bytes read
    closed: bool
    carries_commands: bool  # a receiver COMMAND may be sent on it

    def send(self, data: bytes) -> None: ...


class ConnectionRegistry:
    def __init__(self):
        self._by_account: dict[str, set[Stream]] = {}
        self._accounts_of: dict[Stream, OrderedDict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._accounts_of)

    def register(self, link: Stream, account: str) -> None:
        """``link`` carries frames of ``account`` (idempotent)."""
        accounts = self._accounts_of.setdefault(link, OrderedDict())
        accounts[account] = None
        accounts.move_to_end(account)
        self._by_account.setdefault(account, set()).add(link)
        if len(accounts) > ACCOUNTS_PER_STREAM:
            self._drop(link, accounts.popitem(last=False)[0])

    def unregister(self, link: Stream) -> None:
        """``link`` is gone (idempotent)."""
        for account in self._accounts_of.pop(link, ()):
            self._drop(link, account)

    def _drop(self, link: Stream, account: str) -> None:
        links = self._by_account[account]
        links.discard(link)
        if not links:
            del self._by_account[account]

    def stream_for(self, account: str) -> Stream | None:
        """The stream a command to ``account`` goes on: its open link that
        carries commands and was heard last, or None."""
        best = None
        for link in self._by_account.get(account, ()):
            if link.closed or not link.carries_commands:
                continue
            if best is None or link.last_rx > best.last_rx:
                best = link
        return best

    def listing(self) -> dict[str, list[dict]]:
        """{account: [{"transport", "peer", "since", "last_rx"}, ...]} of
        the open streams (the console's connections view; ``transport`` is
        the listener's kind)."""
        out: dict[str, list[dict]] = {}
        for account, links in self._by_account.items():
            rows = [{"transport": link.kind, "peer": link.peer, "since": link.opened,
                     "last_rx": link.last_rx} for link in links if not link.closed]
            if rows:
                out[account] = rows
        return out
