"""Live updates for the console: what the receiver publishes (a new event,
an alarm's state, a supervision change, a security event, an output's
health) goes to every subscriber's queue.

    q = hub.subscribe()          # the console's live stream, one per page
    msg = await q.get()
    hub.unsubscribe(q)

Invariants:

- Publishing never waits and never fails: each subscriber has a bounded
  queue (:data:`SUBSCRIBER_QUEUE`); a subscriber that does not keep up
  loses messages, counted in its ``dropped`` (the console then reloads),
  and never slows the event path.
- With several receivers on one store, a message published here is also
  given to ``broadcast`` (receiver.ownership sends it to the others); one
  that came from them is published with ``broadcast=False``.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from receiver.messages import ConsoleMessage

# Messages a subscriber queue holds before new ones are dropped for it.
SUBSCRIBER_QUEUE = 1_000


class Subscription(asyncio.Queue):
    """A subscriber's queue of messages (receiver.messages); ``dropped``
    counts what did not fit."""

    def __init__(self, maxsize: int = SUBSCRIBER_QUEUE):
        super().__init__(maxsize)
        self.dropped = 0


class Hub:
    def __init__(self):
        self._subscribers: set[Subscription] = set()
        # set when other receivers share the store (receiver.ownership): it
        # is given each message's JSON
        self.broadcast: Callable[[dict], None] | None = None

    def __len__(self) -> int:
        return len(self._subscribers)

    @property
    def wanted(self) -> bool:
        """Would a message published now reach anyone?  (The event path
        builds its messages only then.)"""
        return bool(self._subscribers) or self.broadcast is not None

    def subscribe(self) -> Subscription:
        q = Subscription()
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: Subscription) -> None:
        self._subscribers.discard(q)

    def publish(self, message: ConsoleMessage, broadcast: bool = True) -> None:
        """Give ``message`` to every subscriber here and, with several
        receivers, to theirs (``broadcast=False``: it came from them)."""
        if broadcast and self.broadcast is not None:
            self.broadcast(message.to_json())
        for q in self._subscribers:
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:
                q.dropped += 1
