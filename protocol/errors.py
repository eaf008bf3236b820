"""The two error families of the protocol layer (after h11).

`RemoteProtocolError` means the peer sent something we must reject: a bad
CRC, a bad MAC, a replayed or out-of-window frame, an oversize frame, a
malformed body.  Code that reads the wire catches exactly this family; any
other exception escaping a decoder is a bug.

`LocalProtocolError` means we misused the API: building a message with a
field out of range, sending with no key, and the like.
"""


class GuardlineError(Exception):
    """Base of every error the protocol layer raises on purpose."""


class RemoteProtocolError(GuardlineError):
    """The peer's data violates the protocol.  `reason` is a NAK reason code
    (protocol.lean.glwire.NAK_*) where one applies, else 0."""

    def __init__(self, msg, reason=0):
        super().__init__(msg)
        self.reason = reason


class LocalProtocolError(GuardlineError):
    """We tried to do something the protocol does not allow."""
