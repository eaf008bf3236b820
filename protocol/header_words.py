"""Why bytes do not start with a Guardline frame header, named and in words.

`guardline-receiver decode` explains a captured frame with protocol/spec.py
(construct) and, where construct is not installed, with the lean codec;
both ask this module why there is no usable header, so the same bytes get
the same reason and the same sentence either way.

Invariant: a problem is named for what is wrong, never for a check that
did not run.  Bytes with no sync word, or cut short before the header's 21
bytes, have no header to address a NAK to: they carry no NAK reason
(`reason` None, a receiver drops them: protocol/session.py,
`handle_datagram`) and are named ``no_header`` / ``cut_short``.  A header
whose CRC-16 does not match is ``bad_crc``; one whose body length is
impossible is ``malformed`` (its CRC held: calling it bad_crc would send a
reader after line noise that is not there).  docs/protocol.md, section 12.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.lean import glwire as w

NO_HEADER = "no_header"
CUT_SHORT = "cut_short"


@dataclass(frozen=True)
class HeaderProblem:
    reason: int | None  # the NAK code (glwire.NAK_*), None when no NAK can be addressed
    name: str  # NAK_NAMES[reason], or NO_HEADER / CUT_SHORT
    detail: str  # a sentence for the person decoding

    def as_json(self) -> dict:
        return {"reason": self.reason, "reason_name": self.name, "detail": self.detail}


def header_problem(data: bytes) -> HeaderProblem | None:
    """What is wrong with the header at the start of `data`; None when it
    is a good header (sync word, CRC-16, body length in range)."""
    n = len(data)
    if data[:len(w.SYNC)] != w.SYNC:
        return HeaderProblem(None, NO_HEADER, "%d byte%s, no frame header (a frame starts with "
                             "\"GL\"%s)" % (n, "" if n == 1 else "s",
                                            "; this with %s" % data[:4].hex() if n else ""))
    if n < w.HEADER_LEN:
        return HeaderProblem(None, CUT_SHORT, "%d bytes, cut short: a header is %d"
                             % (n, w.HEADER_LEN))
    if w.crc16(data, 0, w.HEADER_LEN - 2) != int.from_bytes(data[w.HEADER_LEN - 2:w.HEADER_LEN],
                                                            "big"):
        return HeaderProblem(w.NAK_BAD_CRC, w.NAK_NAMES[w.NAK_BAD_CRC],
                             "header CRC does not match (noise, or a byte changed)")
    body_len = int.from_bytes(data[17:19], "big")
    if not (w.MIN_BODY_LEN <= body_len <= w.MAX_BODY_LEN and body_len % 16 == 0):
        return HeaderProblem(w.NAK_MALFORMED, w.NAK_NAMES[w.NAK_MALFORMED],
                             "impossible body length %d (%d..%d, a multiple of 16)"
                             % (body_len, w.MIN_BODY_LEN, w.MAX_BODY_LEN))
    return None
