"""Loopback ports for a far end started later (a receiver, a simulated
panel's control socket, a dispatch sink).

A port found free here can be taken by someone else before it is bound:
a small race a harness accepts, because whatever binds it then fails
loudly (the receiver does not write its ready file, the sim's VM ends
with status 4), never silently."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(kind: int = socket.SOCK_STREAM, host: str = LOOPBACK) -> int:
    """A port nothing is bound to on `host` right now (TCP by default;
    ``socket.SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
