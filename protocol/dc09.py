"""SIA DC-09 (ANSI/SIA DC-09-2013, "Internet Protocol Event Reporting") codec.

Host side, sans-I/O: bytes in, `Dc09Message` out, and back.  No sockets, no
clock: the receiver's time comes in as an argument.  The receiver listeners
(TCP/UDP) and the panel firmware wrap this module; the firmware itself
carries the lean twin in `protocol/lean/gldc09.py`, which the tests prove
byte-identical to `build` here.

Frame (DC-09 5.5.1), one message per frame, all ASCII:

    LF crc 0LLL "[*]ID" seq [Rrcvr] [Lpref] #acct [data] [x-data]... [_timestamp] CR

- crc:  4 hex digits, CRC-16/ARC (poly 0x8005 reflected = 0xA001, init 0)
        over the text from the opening quote up to (not including) CR
        (5.5.1.2).
- 0LLL: '0' then 3 hex digits: the length of that same span (5.5.1.3), so
        a frame body is at most 0xFFF bytes.
- ID:   the ID token (5.5.1.4); a leading '*' marks an encrypted message.
- seq:  4 decimal digits (5.5.1.5), 0001-9999 then back to 0001; "0000" is
        what a NAK carries and what some panels put in NULL messages.
- Rrcvr (optional) and Lpref (required by the standard, optional here)
        are 1-6 hex digits; #acct is 3-16 hex digits (5.5.1.6).
- [data] is the message data (5.5.1.7); extended data blocks [Xvalue]
        follow, each tagged by one upper-case letter; then the timestamp
        _HH:MM:SS,MM-DD-YYYY in UTC (5.5.1.8).

Encryption (5.4): AES-128/192/256 by key length, CBC with an all-zero IV
(5.4.6).  The encrypted region starts right after the '[' that opens the
data block and runs to the last timestamp character; the '[' stays in the
clear and there is nothing after the ciphertext but CR (5.4.4.1).  The
region is `pad | data ] [x-data]... _timestamp`; the pad is pseudo-random,
never contains '|', '[' or ']' (5.4.4.2), is always followed by '|', and is
as long as needed to make the region a multiple of 16 bytes, 16 bytes when
it already is one (5.4.4.3).  The ciphertext goes out as upper-case hex.
Encrypted messages must carry a timestamp, and the receiver checks it
against its own clock ("the timestamp test", 5.5.1.8); a message failing it
is answered with NAK, which is never encrypted (5.5.3.2).

Invariants this module keeps:
- `parse` and `Dc09Reader` raise only `Dc09Error` subclasses (all
  `RemoteProtocolError`) for anything the peer sends.  Misuse on our side
  (a bad key from our own configuration, a field out of range in `build`)
  raises `LocalProtocolError`.  Wire data is never checked with assert.
- Every buffer is bounded: a frame by MAX_FRAME_LEN, the reader's backlog by
  MAX_BUFFERED.
- `parse(build(m, key), ...) == m` for every message `build` accepts.

Why regular expressions and not `construct` (house style prefers construct
for wire formats): DC-09 is an ASCII frame made of optional, variable-length
fields told apart by a prefix letter, with a hex-encoded ciphertext in the
middle; construct would need a custom adapter for almost every field.  The
lean codec is proven equal to this one by tests instead.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import crcmod.predefined

from protocol.lean.cpython_cryptolib import AesContext

from protocol.errors import LocalProtocolError, RemoteProtocolError

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "ADM_CID", "SIA_DCS", "NULL", "ACK", "NAK", "DUH", "KNOWN_MESSAGE_IDS",
    "NEED_DATA", "MAX_BODY_LEN", "MAX_FRAME_LEN", "MAX_BUFFERED",
    "DEFAULT_WINDOW", "Dc09Message", "Dc09Error", "Dc09CrcError",
    "Dc09FormatError", "Dc09OversizeError", "Dc09TimestampError",
    "Dc09KeyError", "Dc09Reader", "parse", "build", "build_ack", "build_nak",
    "build_duh", "next_seq", "parse_key", "crc16", "adm_cid_to_event",
    "event_to_adm_cid", "sia_dcs_to_event", "event_to_sia_dcs",
    "SIA_CID_TABLE", "SIA_TO_CID", "CID_TO_SIA", "DEVIATIONS", "decode_text",
    "SiaEvent", "sia_dcs_events", "EXTENDED_DATA", "extended_data", "location",
    "parse_header",
]

# --- constants ---------------------------------------------------------------

LF = 0x0A
CR = 0x0D

# ID tokens (DC-09 5.5.1.4).  Others that are well formed still parse, so a
# receiver can answer DUH ("unable to process", 5.5.3.3) instead of dropping.
SIA_DCS = "SIA-DCS"
ADM_CID = "ADM-CID"
NULL = "NULL"
ACK = "ACK"
NAK = "NAK"
DUH = "DUH"
KNOWN_MESSAGE_IDS = frozenset((SIA_DCS, ADM_CID, NULL, ACK, NAK, DUH))
# Tokens that carry no message data ("[]"): link test and the three replies.
_DATALESS_IDS = frozenset((NULL, ACK, NAK, DUH))

# The length field is '0' plus 3 hex digits (DC-09 5.5.1.3), so the span it
# counts (opening quote to before CR) is at most 0xFFF bytes.
MAX_BODY_LEN = 0xFFF
# LF + 4 CRC digits + 4 length digits + body + CR.
MAX_FRAME_LEN = MAX_BODY_LEN + 10
# What Dc09Reader holds before the caller drains it with next_frame():
# sixteen maximal frames.  A TCP read never brings more than the caller's
# recv size, so this only trips when the caller stops draining.
MAX_BUFFERED = 16 * MAX_FRAME_LEN

SEQ_FIRST = 1  # DC-09 5.5.1.5: 0001..9999, then 0001 again
SEQ_LAST = 9999

# The timestamp test (DC-09 5.5.1.8): a message may be at most 40 s older
# and 20 s newer than the receiver's clock.  (lower, upper) bounds of
# message time minus receiver time, in seconds.
DEFAULT_WINDOW = (-40, 20)

_AES_BLOCK = 16
_ZERO_IV = bytes(_AES_BLOCK)  # DC-09 5.4.6: CBC with an all-zero IV
_KEY_LENGTHS = (16, 24, 32)  # AES-128/192/256 (DC-09 5.4.1)
# Pad bytes we never send (DC-09 5.4.4.2).
_PAD_FORBIDDEN = frozenset(b"|[]")
# Pad bytes we do send: printable ASCII minus the forbidden three.  The
# standard allows any byte 0-255 except those; staying printable costs
# 1.5 bits of randomness per byte and keeps receivers that decode the
# plaintext as text (several open-source ones do) working.
_PAD_ALPHABET = bytes(
    b for b in range(0x21, 0x7F) if b not in _PAD_FORBIDDEN
)
_PAD_SET = frozenset(_PAD_ALPHABET)

_TIMESTAMP_FMT = "%02d:%02d:%02d,%02d-%02d-%04d"  # HH:MM:SS,MM-DD-YYYY

crc16 = crcmod.predefined.mkCrcFun("crc-16")
"""CRC-16/ARC of a bytes object, as DC-09 5.5.1.2 (and DC-07) define it."""


class _NeedData:
    def __repr__(self):
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Sentinel from Dc09Reader.next_frame(): no complete frame buffered yet."""


# --- errors -------------------------------------------------------------------

class Dc09Error(RemoteProtocolError):
    """The peer's DC-09 frame must be rejected."""


class Dc09CrcError(Dc09Error):
    """The CRC field does not match the frame (DC-09 5.5.1.2).
    `crc_includes_cr` is True when it would match with the closing CR
    counted (a known panel deviation, accepted per account); `account` is
    then the account from the header."""

    crc_includes_cr: bool = False
    account: str | None = None


class Dc09FormatError(Dc09Error):
    """The frame is not well formed DC-09."""


class Dc09OversizeError(Dc09FormatError):
    """More than MAX_FRAME_LEN bytes without a frame end."""


class Dc09TimestampError(Dc09Error):
    """An encrypted message failed the timestamp test (DC-09 5.5.1.8): no
    timestamp, an invalid one, or one outside the window.  `message` is the
    decoded message (its `timestamp` None if it could not be read), so the
    caller can answer with build_nak() (5.5.3.2)."""

    def __init__(self, text, message):
        super().__init__(text)
        self.message = message


class Dc09KeyError(Dc09Error):
    """An encrypted message for an account we have no key for, or one that
    does not decrypt to a valid DC-09 payload (wrong key).  `account` is the
    account from the clear header."""

    def __init__(self, text, account):
        super().__init__(text)
        self.account = account


# --- the message --------------------------------------------------------------

@dataclass
class Dc09Message:
    """One DC-09 message, decoded.

    msg_id    ID token without quotes or '*', e.g. "ADM-CID".
    encrypted the '*' flag: the region after '[' is encrypted.
    seq       sequence number, 0..9999.
    receiver  hex text after 'R', or None when absent.
    line      hex text after 'L' (account prefix), or None when absent.
    account   hex text after '#' (3-16 digits); "0" for a NAK's "A0".
    data      content of the first [ ] block, e.g. "#1234|1130 01 003".
    extended  extended data blocks, in order, as (letter, value).
    timestamp UTC, tz-aware, or None.

    Not part of the message's identity (excluded from ==), set by parse:
    deviations     the field deviations parse tolerated (DEVIATIONS), in
                   the order met, e.g. ["empty_line_prefix"].
    bad_timestamp  the timestamp text of a clear message that could not
                   be read (its `timestamp` is then None).
    """

    msg_id: str
    encrypted: bool
    seq: int
    receiver: str | None
    line: str | None
    account: str
    data: str = ""
    extended: list[tuple[str, str]] = field(default_factory=list)
    timestamp: datetime | None = None
    deviations: list[str] = field(default_factory=list, compare=False)
    bad_timestamp: str | None = field(default=None, compare=False)


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: 9999 wraps to 0001 (DC-09 5.5.1.5)."""
    return SEQ_FIRST if seq >= SEQ_LAST or seq < SEQ_FIRST else seq + 1


def parse_key(text: str, fmt: str = "hex") -> bytes:
    """An account's AES key from configuration: `fmt` 'hex' (32/48/64 hex
    digits) or 'ascii' (16/24/32 characters, used as their bytes)."""
    if not isinstance(text, str):
        raise LocalProtocolError("key must be given as text")
    if fmt == "hex":
        if not re.fullmatch(r"[0-9A-Fa-f]*", text) or len(text) % 2:
            raise LocalProtocolError("hex key has a non-hex digit or odd length")
        key = bytes.fromhex(text)
    elif fmt == "ascii":
        if not all(0x20 <= ord(c) < 0x7F for c in text):
            raise LocalProtocolError("ascii key has a non-printable character")
        key = text.encode("ascii")
    else:
        raise LocalProtocolError("key format must be 'hex' or 'ascii'")
    if len(key) not in _KEY_LENGTHS:
        raise LocalProtocolError(
            "AES key must be 16, 24 or 32 bytes, not %d" % len(key))
    return key


# --- parsing ------------------------------------------------------------------

# Field deviations parse() tolerates, with what they are.  Each is accepted
# on purpose (docs/dc09.md, "Field deviations"), reported in
# Dc09Message.deviations, and logged by the receiver once per account.
DEVIATIONS = {
    "empty_line_prefix": "an 'L' with no digits after it (\"0001L#acct\")",
    "trailing_nul": "a NUL byte after the closing CR",
    "crc_includes_cr": "CRC and length counting the closing CR too",
}

# CRC and length fields are upper-case hex ("0"-"9", "A"-"F", 5.5.1.2/3).
# Taking lower case too would let a flipped 0x20 bit in a letter of the
# CRC field go unnoticed, since the CRC does not cover its own field.
_HEX4 = re.compile(rb"[0-9A-F]{4}")
# The header up to and including the '[' that opens the data block.  The
# account marker is mandatory here: "#acct", or "A0" which the standard's NAK
# carries (5.5.3.2).  Trying that first makes the hex run after 'L' give
# back "A0" in "R0L0A0[" instead of swallowing it.  An 'L' with no digits
# is a field deviation we accept (line ""), see DEVIATIONS.
_HEADER = re.compile(
    rb'"(?P<star>\*?)(?P<id>[A-Z][A-Z0-9-]{0,15})"'
    rb"(?P<seq>[0-9]{4})"
    rb"(?:R(?P<rcvr>[0-9A-Fa-f]{1,6}))?"
    rb"(?:L(?P<line>[0-9A-Fa-f]{0,6}))?"
    rb"(?:#(?P<acct>[0-9A-Fa-f]{3,16})|(?P<a0>A0))"
    rb"\["
)
# Some receivers send NAK with no account field at all ("NAK"0000R0L0[]).
_HEADER_NO_ACCOUNT = re.compile(
    rb'"(?P<star>\*?)(?P<id>NAK)"'
    rb"(?P<seq>[0-9]{4})"
    rb"(?:R(?P<rcvr>[0-9A-Fa-f]{1,6}))?"
    rb"(?:L(?P<line>[0-9A-Fa-f]{0,6}))?"
    rb"\["
)
_TIMESTAMP = re.compile(
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}),([0-9]{2})-([0-9]{2})-([0-9]{4})")
_CIPHER_HEX = re.compile(rb"(?:[0-9A-Fa-f]{32})+")

# Windows-1252 with the five bytes it leaves undefined (0x81, 0x8D, 0x8F,
# 0x90, 0x9D) taken as the C1 controls of the same number, as web browsers
# do: every byte decodes, so no text can make a message undecodable.
_CP1252 = "".join(bytes([b]).decode("cp1252", "replace") if b not in (
    0x81, 0x8D, 0x8F, 0x90, 0x9D) else chr(b) for b in range(256))


def decode_text(b: bytes) -> str:
    """Text from a data or extended data block (DC-09 5.5.1.7, 5.5.1.9).

    ASCII as it is; else UTF-8 when the bytes are valid UTF-8; else
    Windows-1252, the character set the standard's extended-data table
    names for text.  Never fails: a panel's text never makes a message
    unreadable.  (Windows-1252 text that happens to be valid UTF-8, such
    as "Ã¼", reads as UTF-8; real text almost never does.)"""
    try:
        return b.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(_CP1252[c] for c in b)


# The bytes each check allows; a text is all allowed when deleting them
# leaves nothing (bytes.translate: one C pass, no Python per byte).
_PRINTABLE = bytes(range(0x20, 0x7F))
_TEXT = bytes(c for c in range(0x20, 0x100) if c != 0x7F)


def _printable(b: bytes) -> bool:
    # The header is ASCII text; control characters (CR/LF above all) never
    # appear between the opening quote and CR.
    return not bytes(b).translate(None, _PRINTABLE)


def _text_bytes(b: bytes) -> bool:
    # Data and extended data: printable ASCII, or bytes of 8-bit text
    # (0x80-0xFF: Windows-1252 or UTF-8); never a control character.
    return not bytes(b).translate(None, _TEXT)


def _split_payload(s: bytes) -> tuple[bytes, list[tuple[str, bytes]], bytes | None]:
    """Split what follows the opening '[' (decrypted, pad removed) into
    data, extended data and the timestamp text (None when absent).  Works
    on bytes: '[', ']' and '_' are never part of a multi-byte UTF-8
    character or a Windows-1252 letter, so text cannot end a block."""
    end = s.find(b"]")
    if end < 0:
        raise Dc09FormatError("data block not closed with ']'")
    data = s[:end]
    if b"[" in data:
        raise Dc09FormatError("'[' inside the data block")
    extended = []
    pos = end + 1
    while pos < len(s) and s[pos:pos + 1] == b"[":
        close = s.find(b"]", pos)
        if close < 0:
            raise Dc09FormatError("extended data block not closed")
        block = s[pos + 1:close]
        # DC-09 5.5.1.9: each extended block starts with its identifier,
        # one upper-case letter.
        if not block or not (0x41 <= block[0] <= 0x5A) or b"[" in block:
            raise Dc09FormatError("malformed extended data block")
        extended.append((chr(block[0]), block[1:]))
        pos = close + 1
    rest = s[pos:]
    if not rest:
        return data, extended, None
    if rest[:1] != b"_":
        raise Dc09FormatError("unexpected text after the data blocks")
    return data, extended, rest[1:]


def _timestamp_from_text(text: str) -> datetime | None:
    m = _TIMESTAMP.fullmatch(text)
    if not m:
        return None
    hh, mi, ss, mo, dd, yy = map(int, m.groups())
    try:
        return datetime(yy, mo, dd, hh, mi, ss, tzinfo=timezone.utc)
    except ValueError:
        return None


# AES contexts kept per key (an account's key is used for every message and
# its ACK): bounded, least recently used out; ~1 KiB each.
AES_CONTEXTS = 4096


@functools.lru_cache(maxsize=AES_CONTEXTS)
def _aes(key: bytes) -> AesContext:
    return AesContext(key)


def _decrypt(ciphertext: bytes, key: bytes) -> bytes:
    return bytes(_aes(bytes(key)).cbc(_ZERO_IV, ciphertext, False))


def _encrypt(plaintext: bytes, key: bytes) -> bytes:
    return bytes(_aes(bytes(key)).cbc(_ZERO_IV, plaintext, True))


def _strip_pad(plain: bytes, msg_id: str) -> bytes | None:
    """The decrypted region without its pad and '|', or None if there is no
    pad terminator where one must be."""
    bar = plain.find(b"|")
    close = plain.find(b"]")
    if bar >= 0 and (close < 0 or bar < close):
        pad = plain[:bar]
        if b"[" in pad:
            return None
        return plain[bar + 1:]
    # Field deviation, accepted only where no data can be mistaken for pad:
    # some senders (pysiaalarm's receiver among them, and panels' encrypted
    # NULL) omit the '|' after the pad in data-less messages, e.g.
    # "ppppppppppp]_18:24:52,07-05-2020".  5.4.4.3 requires the '|'.  A
    # data message without it cannot be told apart when its data holds a
    # '|' ("#acct|..."): that '|' ends the pad, and the data comes out
    # without its "#acct|" prefix (the event itself intact).  Without any
    # '|' before the first ']' a data message is refused.
    if msg_id in _DATALESS_IDS and close >= 0 and b"[" not in plain[:close]:
        return plain[close:]
    return None


def _allowed(option, account: str) -> bool:
    if callable(option):
        return bool(option(account))
    return bool(option)


def parse(frame, key_lookup=None, now=None, window=DEFAULT_WINDOW,
          crc_includes_cr: bool | Callable[[str], bool] = False) -> Dc09Message:
    """Decode one frame (LF ... CR, as Dc09Reader.next_frame() returns it;
    NUL bytes after the CR are tolerated).

    key_lookup(account: str) -> bytes | None gives the AES key for an
    encrypted message's account (read from the clear header before
    decrypting).  `now` (datetime, UTC; naive is taken as UTC) enables the
    timestamp test for encrypted messages; `window` is (lower, upper) in
    seconds or as timedeltas, of message time minus `now`.
    `crc_includes_cr` (bool, or account -> bool) accepts the deviation of
    panels whose CRC and length count the closing CR too; without it such
    a frame is a Dc09CrcError whose `.crc_includes_cr` is True.

    Raises Dc09CrcError, Dc09FormatError (Dc09OversizeError),
    Dc09TimestampError (with .message, answer NAK), Dc09KeyError (with
    .account).  All are RemoteProtocolError.
    """
    msg, rest = _parse_header(frame, crc_includes_cr)
    account, msg_id, encrypted = msg.account, msg.msg_id, msg.encrypted
    if encrypted:
        if not _CIPHER_HEX.fullmatch(rest):
            raise Dc09FormatError(
                "encrypted region is not whole AES blocks of hex")
        key = key_lookup(account) if key_lookup is not None else None
        if key is None:
            _LOGGER.debug("DC-09 account %s: encrypted message, no key", account)
            raise Dc09KeyError("no key for account %s" % account, account)
        if not isinstance(key, (bytes, bytearray)) or len(key) not in _KEY_LENGTHS:
            raise LocalProtocolError("key for account %s is not 16/24/32 bytes"
                                     % account)
        region = _strip_pad(_decrypt(bytes.fromhex(rest.decode()), bytes(key)), msg_id)
        if region is None or not _text_bytes(region):
            _LOGGER.debug("DC-09 account %s: does not decrypt", account)
            raise Dc09KeyError("account %s: region does not decrypt to a "
                               "DC-09 payload (wrong key?)" % account, account)
        rest = region
    elif not _text_bytes(rest):
        raise Dc09FormatError("control character in the message data")

    try:
        data, extended, ts_bytes = _split_payload(rest)
    except Dc09FormatError:
        if not encrypted:
            raise
        # A wrong key yields random bytes; now that 8-bit text is accepted
        # (not only printable ASCII) some of them pass the pad and text
        # checks above.  Decrypted bytes that do not split into DC-09
        # blocks are the wrong key's, not a malformed message's.
        raise Dc09KeyError("account %s: region does not decrypt to a DC-09 payload "
                           "(wrong key?)" % account, account) from None
    if encrypted and ts_bytes is not None and not _printable(ts_bytes):
        # The timestamp is ASCII digits and punctuation (5.5.1.8): random
        # bytes there are a wrong key, not a time to NAK with.
        raise Dc09KeyError("account %s: region does not decrypt to a DC-09 payload "
                           "(wrong key?)" % account, account)
    msg.data = decode_text(data)
    msg.extended = [(letter, decode_text(v)) for letter, v in extended]
    if ts_bytes is not None:
        ts_text = decode_text(ts_bytes)
        ts = _timestamp_from_text(ts_text)
        if ts is not None:
            msg.timestamp = ts
        elif encrypted:
            raise Dc09TimestampError("invalid timestamp %r" % ts_text, msg)
        else:
            # A clear message's timestamp is not tested (5.5.1.8): one we
            # cannot read costs the message nothing.  Kept for the record.
            msg.bad_timestamp = ts_text
    if encrypted:
        # DC-09 5.5.1.8: encrypted messages carry a timestamp, and it must
        # fall inside the receiver's window.
        if msg.timestamp is None:
            raise Dc09TimestampError("encrypted message without timestamp", msg)
        if now is not None:
            _check_window(msg, msg.timestamp, now, window)
    return msg


def parse_header(frame, crc_includes_cr: bool | Callable[[str], bool] = False) -> Dc09Message:
    """The clear part of a frame, checked (framing, CRC, length, header)
    but not decrypted: data, extended data and timestamp are left empty.
    For showing an encrypted frame whose key is not at hand."""
    return _parse_header(frame, crc_includes_cr)[0]


def _parse_header(frame, crc_includes_cr) -> tuple[Dc09Message, bytes]:
    if isinstance(frame, str):
        raise LocalProtocolError("parse() takes bytes, not str")
    raw = bytes(frame)
    deviations = []
    if raw.endswith(b"\x00") and raw.rstrip(b"\x00").endswith(b"\r"):
        # DEVIATIONS["trailing_nul"]: C strings sent with their terminator
        raw = raw.rstrip(b"\x00")
        deviations.append("trailing_nul")
    if len(raw) > MAX_FRAME_LEN:
        raise Dc09OversizeError("frame longer than %d bytes" % MAX_FRAME_LEN)
    if len(raw) < 10 or raw[0] != LF or raw[-1] != CR:
        raise Dc09FormatError("not a LF ... CR frame")
    crc_field, len_field, body = raw[1:5], raw[5:9], raw[9:-1]
    if not _HEX4.fullmatch(crc_field):
        raise Dc09FormatError("CRC field is not 4 upper-case hex digits")
    # DC-09 5.5.1.3: "0LLL", a '0' and three hex digits.
    if len_field[:1] != b"0" or not _HEX4.fullmatch(len_field):
        raise Dc09FormatError("length field is not '0' + 3 hex digits")
    length, crc = int(len_field, 16), int(crc_field, 16)
    m = _HEADER.match(body) or _HEADER_NO_ACCOUNT.match(body)
    if length != len(body) or crc16(body) != crc:
        if length == len(body) + 1 and crc16(body + b"\r") == crc:
            # DEVIATIONS["crc_includes_cr"] (seen from ELDES panels)
            account = (m.groupdict().get("acct") or b"").decode() if m else ""
            if not _allowed(crc_includes_cr, account):
                e = Dc09CrcError("CRC and length include the closing CR (a known panel "
                                 "deviation, not enabled for account %s)" % (account or "?"))
                e.crc_includes_cr, e.account = True, account
                raise e
            deviations.append("crc_includes_cr")
        elif length != len(body):
            raise Dc09FormatError("length field %s but %d bytes follow"
                                  % (len_field.decode(), len(body)))
        else:
            raise Dc09CrcError("CRC mismatch")
    if not m or not _printable(body[:m.end()]):
        raise Dc09FormatError("malformed header")
    msg_id = m["id"].decode()
    encrypted = bool(m["star"])
    groups = {k: (v.decode() if v is not None else None) for k, v in m.groupdict().items()}
    if groups.get("a0"):
        if msg_id != NAK:
            raise Dc09FormatError("account 'A0' outside a NAK")
        account = "0"
    else:
        account = groups.get("acct") or ""
    if groups["line"] == "":
        deviations.append("empty_line_prefix")  # DEVIATIONS["empty_line_prefix"]
    rest = body[m.end():]
    msg = Dc09Message(
        msg_id=msg_id, encrypted=encrypted, seq=int(m["seq"]),
        receiver=groups["rcvr"], line=groups["line"], account=account,
        deviations=deviations)
    return msg, rest


def _as_utc(t: datetime) -> datetime:
    if not isinstance(t, datetime):
        raise LocalProtocolError("time must be a datetime")
    if t.tzinfo is None:
        return t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def _seconds(x) -> timedelta:
    return x if isinstance(x, timedelta) else timedelta(seconds=x)


def _check_window(msg: Dc09Message, timestamp: datetime, now, window) -> None:
    lower, upper = (_seconds(w) for w in window)
    delta = timestamp - _as_utc(now)
    if not lower <= delta <= upper:
        raise Dc09TimestampError(
            "account %s: timestamp %s is %+.0f s from receiver time"
            % (msg.account, timestamp.isoformat(), delta.total_seconds()),
            msg)


# --- building -----------------------------------------------------------------

_TOKEN = re.compile(r"[A-Z][A-Z0-9-]{0,15}")
_HEX_1_6 = re.compile(r"[0-9A-Fa-f]{1,6}")
_ACCOUNT = re.compile(r"[0-9A-Fa-f]{3,16}")


_TEXT_ENCODINGS = ("ascii", "cp1252", "utf-8")


def _check_text(name: str, s, encoding: str = "ascii") -> None:
    if not isinstance(s, str) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in s):
        raise LocalProtocolError("%s must be text without control characters" % name)
    try:
        s.encode(encoding)
    except UnicodeEncodeError:
        raise LocalProtocolError("%s is not %s text" % (name, encoding)) from None
    if "[" in s or "]" in s:
        raise LocalProtocolError("%s must not contain '[' or ']'" % name)


def _format_timestamp(t: datetime) -> str:
    t = _as_utc(t)
    return _TIMESTAMP_FMT % (t.hour, t.minute, t.second, t.month, t.day, t.year)


# random_pad's rejection sampling in C: a random byte's low 7 bits, kept
# when they are an allowed pad byte (each allowed byte has two sources, so
# every allowed byte stays equally likely)
_PAD_MAP = bytes(b & 0x7F for b in range(256))
_PAD_DROP = bytes(b for b in range(256) if b & 0x7F not in _PAD_SET)


def random_pad(n: int) -> bytes:
    """`n` pad bytes from os.urandom, none of them '|', '[' or ']'
    (DC-09 5.4.4.2); see _PAD_ALPHABET for why they are printable."""
    out = b""
    while len(out) < n:
        # Rejection sampling keeps every allowed byte equally likely.
        out += os.urandom(2 * (n - len(out)) + 8).translate(_PAD_MAP, _PAD_DROP)
    return out[:n]



def pad_length(payload_len: int) -> int:
    """Pad bytes for a region whose part after the pad ('|' included) is
    `payload_len` bytes: 1..16, a full 16 when already aligned (5.4.4.3)."""
    return _AES_BLOCK - payload_len % _AES_BLOCK


def build(msg: Dc09Message, key: bytes | None = None, pad: bytes | None = None,
          text_encoding: str = "ascii") -> bytes:
    """Encode `msg` as one frame.  An encrypted message needs `key` (16/24/32
    bytes) and a timestamp; `pad` (tests, golden vectors) replaces the
    random pad and must be long enough to align the region.
    `text_encoding` ('ascii', 'cp1252' or 'utf-8') encodes the data and
    extended data; ASCII, the default, refuses any other character.  A
    `line` of "" sends a bare 'L' (only to echo a panel that sends one)."""
    if text_encoding not in _TEXT_ENCODINGS:
        raise LocalProtocolError("text_encoding must be one of %s" % ", ".join(_TEXT_ENCODINGS))
    if not isinstance(msg.msg_id, str) or not _TOKEN.fullmatch(msg.msg_id):
        raise LocalProtocolError("bad ID token %r" % (msg.msg_id,))
    if (not isinstance(msg.seq, int) or isinstance(msg.seq, bool)
            or not 0 <= msg.seq <= SEQ_LAST):
        raise LocalProtocolError("sequence number must be 0..9999")
    for name, value in (("receiver", msg.receiver), ("line", msg.line)):
        if value is not None and (not isinstance(value, str)
                                  or not (_HEX_1_6.fullmatch(value)
                                          or (name == "line" and value == ""))):
            raise LocalProtocolError("%s must be 1-6 hex digits" % name)
    if msg.msg_id == NAK and msg.account == "0":
        account_field = "A0"  # the standard NAK's fixed account (5.5.3.2)
    elif isinstance(msg.account, str) and _ACCOUNT.fullmatch(msg.account):
        account_field = "#" + msg.account
    else:
        raise LocalProtocolError("account must be 3-16 hex digits")
    _check_text("data", msg.data, text_encoding)
    if not isinstance(msg.extended, (list, tuple)):
        raise LocalProtocolError("extended must be a list of (letter, value)")
    parts = [msg.data, "]"]
    for item in msg.extended:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise LocalProtocolError("extended data items are (letter, value)")
        letter, value = item
        if not isinstance(letter, str) or len(letter) != 1 or not "A" <= letter <= "Z":
            raise LocalProtocolError("extended data letter must be A-Z")
        _check_text("extended data", value, text_encoding)
        parts.append("[%s%s]" % (letter, value))
    if msg.timestamp is not None:
        parts.append("_" + _format_timestamp(msg.timestamp))
    payload = "".join(parts).encode(text_encoding)

    header = '"%s%s"%04d%s%s%s[' % (
        "*" if msg.encrypted else "", msg.msg_id, msg.seq,
        "" if msg.receiver is None else "R" + msg.receiver,
        "" if msg.line is None else "L" + msg.line,
        account_field,
    )
    if msg.encrypted:
        if not isinstance(key, (bytes, bytearray)) or len(key) not in _KEY_LENGTHS:
            raise LocalProtocolError("encrypted message needs a 16/24/32-byte key")
        if msg.timestamp is None:
            raise LocalProtocolError("encrypted message needs a timestamp (5.5.1.8)")
        if pad is None:
            pad = random_pad(pad_length(len(payload) + 1))
        else:
            pad = bytes(pad)
            if not pad or (len(pad) + 1 + len(payload)) % _AES_BLOCK:
                raise LocalProtocolError("pad does not align the region to 16")
            if any(b in _PAD_FORBIDDEN for b in pad):
                raise LocalProtocolError("pad contains '|', '[' or ']'")
        cipher = _encrypt(pad + b"|" + payload, bytes(key))
        body = header.encode("ascii") + cipher.hex().upper().encode("ascii")
    else:
        if key is not None or pad is not None:
            raise LocalProtocolError("key/pad given for an unencrypted message")
        body = header.encode("ascii") + payload
    if len(body) > MAX_BODY_LEN:
        raise LocalProtocolError("message longer than %d bytes" % MAX_BODY_LEN)
    return b"\n%04X0%03X%s\r" % (crc16(body), len(body), body)


def build_ack(for_msg: Dc09Message, key: bytes | None = None, now=None,
              pad: bytes | None = None) -> bytes:
    """ACK for `for_msg` (DC-09 5.5.3.1): echoes sequence, receiver, line
    and account.  The ACK to an encrypted message is "*ACK", encrypted with
    the account's `key` and carrying `now` as its timestamp; a plain ACK
    carries neither (and `key` is ignored, so callers may always pass it)."""
    encrypted = bool(for_msg.encrypted)
    timestamp = None
    if encrypted:
        if now is None:
            raise LocalProtocolError("the ACK to an encrypted message needs `now`")
        timestamp = _as_utc(now)
    ack = Dc09Message(
        msg_id=ACK, encrypted=encrypted, seq=for_msg.seq,
        receiver=for_msg.receiver, line=for_msg.line,
        account=for_msg.account, data="", extended=[],
        timestamp=timestamp,
    )
    return build(ack, key if encrypted else None, pad if encrypted else None)


def build_nak(now) -> bytes:
    """NAK (DC-09 5.5.3.2): "NAK"0000R0L0A0[]_timestamp, never encrypted,
    carrying the receiver's time so the panel can correct its clock."""
    return build(Dc09Message(
        msg_id=NAK, encrypted=False, seq=0, receiver="0", line="0",
        account="0", data="", extended=[], timestamp=_as_utc(now)))


def build_duh(for_msg: Dc09Message) -> bytes:
    """DUH (DC-09 5.5.3.3), for a message received correctly that we cannot
    process: echoes sequence, receiver, line and account; not encrypted."""
    return build(Dc09Message(
        msg_id=DUH, encrypted=False, seq=for_msg.seq,
        receiver=for_msg.receiver, line=for_msg.line,
        account=for_msg.account, data="", extended=[], timestamp=None))


# --- TCP stream splitter -------------------------------------------------------

class Dc09Reader:
    """Splits a TCP byte stream into candidate frames (LF ... CR).

    receive_data(b) buffers; next_frame() returns the bytes of one frame or
    NEED_DATA.  Call next_frame() until NEED_DATA after every
    receive_data().  Bytes before an LF are garbage and dropped; a frame
    never contains LF, so the last LF before a CR starts the frame
    (resynchronisation after noise).  More than MAX_FRAME_LEN bytes from an
    LF without a CR raise Dc09OversizeError once, and are dropped.  The
    frames returned still need parse(): this only finds their bounds.
    """

    def __init__(self):
        self._buf = bytearray()

    def receive_data(self, data) -> None:
        if len(self._buf) + len(data) > MAX_BUFFERED:
            raise LocalProtocolError(
                "Dc09Reader backlog over %d bytes: drain with next_frame()"
                % MAX_BUFFERED)
        self._buf += data

    def next_frame(self):
        buf = self._buf
        start = buf.find(b"\n")
        if start < 0:
            buf.clear()
            return NEED_DATA
        del buf[:start]
        end = buf.find(b"\r")
        if end < 0:
            # Anything before the last LF cannot be part of a frame.
            del buf[:buf.rfind(b"\n")]
            if len(buf) > MAX_FRAME_LEN:
                buf.clear()
                raise Dc09OversizeError(
                    "no CR within %d bytes of LF" % MAX_FRAME_LEN)
            return NEED_DATA
        first = buf.rfind(b"\n", 0, end)
        if end + 1 - first > MAX_FRAME_LEN:
            del buf[:end + 1]
            raise Dc09OversizeError("frame longer than %d bytes" % MAX_FRAME_LEN)
        # NULs right after the CR (DEVIATIONS["trailing_nul"]) stay with the
        # frame, so parse() can report them; any arriving later are garbage
        # before the next LF, dropped like any other.
        stop = end + 1
        while stop < len(buf) and buf[stop] == 0:
            stop += 1
        frame = bytes(buf[first:stop])
        del buf[:stop]
        return frame

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a frame."""
        return len(self._buf)


# --- Contact ID and SIA event content -------------------------------------------

# Contact ID qualifiers (SIA DC-05): new event / opening, restore / closing,
# status report.
Q_NEW = 1
Q_RESTORE = 3
Q_STATUS = 6
_QUALIFIERS = (Q_NEW, Q_RESTORE, Q_STATUS)

# ADM-CID message data (DC-09 5.5.1.7, Contact ID per DC-05):
# "#acct|QEEE GG ZZZ": qualifier, event code, partition, zone or user.
_ADM_CID_DATA = re.compile(
    r"(?:#(?P<acct>[0-9A-Fa-f]{3,16})\|)?"
    r"(?P<q>[0-9])(?P<code>[0-9]{3}) (?P<part>[0-9]{2}) (?P<zone>[0-9]{3})")


def adm_cid_to_event(msg: Dc09Message) -> dict:
    """The Contact ID event in an ADM-CID message, as our event model:
    {'qualifier', 'code', 'partition', 'zone'} (all int)."""
    if msg.msg_id != ADM_CID:
        raise LocalProtocolError("not an ADM-CID message: %s" % msg.msg_id)
    m = _ADM_CID_DATA.fullmatch(msg.data)
    if not m:
        raise Dc09FormatError("account %s: malformed ADM-CID data %r"
                              % (msg.account, msg.data))
    qualifier = int(m["q"])
    if qualifier not in _QUALIFIERS:
        raise Dc09FormatError("account %s: Contact ID qualifier %d"
                              % (msg.account, qualifier))
    return {"qualifier": qualifier, "code": int(m["code"]),
            "partition": int(m["part"]), "zone": int(m["zone"])}


def _event_int(event: dict, name: str, top: int) -> int:
    v = event.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
        raise LocalProtocolError("event %s must be an int 0..%d" % (name, top))
    return v


def _check_account(account) -> None:
    if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
        raise LocalProtocolError("account must be 3-16 hex digits")


def event_to_adm_cid(account: str, event: dict) -> str:
    """ADM-CID message data for an event: "#acct|QEEE GG ZZZ"."""
    _check_account(account)
    q = event.get("qualifier")
    if q not in _QUALIFIERS or isinstance(q, bool):
        raise LocalProtocolError("qualifier must be 1, 3 or 6")
    return "#%s|%d%03d %02d %03d" % (
        account, q, _event_int(event, "code", 999),
        _event_int(event, "partition", 99), _event_int(event, "zone", 999))


# SIA event codes (SIA DC-03) and the Contact ID event they correspond to.
# Rows: (SIA code, Contact ID code, qualifier, meaning).  Where several rows
# share a SIA code the first one is what that SIA code maps to; where
# several share a Contact ID (code, qualifier) the first one is what that
# maps back to.  Cross-checked against pysiaalarm's adm_mapping.json; where
# it differs (130 restore -> BH there) we follow the SIA "restoral" codes.
SIA_CID_TABLE = (
    ("FA", 110, Q_NEW, "fire alarm"),
    ("FH", 110, Q_RESTORE, "fire alarm restore"),
    ("FR", 110, Q_RESTORE, "fire restoral"),
    ("MA", 100, Q_NEW, "medical alarm"),
    ("MH", 100, Q_RESTORE, "medical alarm restore"),
    ("PA", 120, Q_NEW, "panic alarm"),
    ("PH", 120, Q_RESTORE, "panic alarm restore"),
    ("HA", 122, Q_NEW, "hold-up alarm (silent)"),
    ("HH", 122, Q_RESTORE, "hold-up alarm restore"),
    ("HA", 121, Q_NEW, "duress"),
    ("BA", 130, Q_NEW, "burglary alarm"),
    ("BR", 130, Q_RESTORE, "burglary restoral"),
    ("BH", 130, Q_RESTORE, "burglary alarm restore"),
    ("BA", 131, Q_NEW, "perimeter burglary"),
    ("BR", 131, Q_RESTORE, "perimeter burglary restore"),
    ("BA", 132, Q_NEW, "interior burglary"),
    ("BR", 132, Q_RESTORE, "interior burglary restore"),
    ("BA", 134, Q_NEW, "entry/exit burglary"),
    ("BR", 134, Q_RESTORE, "entry/exit burglary restore"),
    ("TA", 137, Q_NEW, "tamper alarm"),
    ("TR", 137, Q_RESTORE, "tamper restoral"),
    ("TA", 144, Q_NEW, "sensor tamper"),
    ("TR", 144, Q_RESTORE, "sensor tamper restore"),
    ("GA", 151, Q_NEW, "gas alarm"),
    ("GH", 151, Q_RESTORE, "gas alarm restore"),
    ("WA", 154, Q_NEW, "water leak alarm"),
    ("WH", 154, Q_RESTORE, "water alarm restore"),
    ("KA", 158, Q_NEW, "high temperature (heat) alarm"),
    ("KH", 158, Q_RESTORE, "heat alarm restore"),
    ("AT", 301, Q_NEW, "AC trouble"),
    ("AR", 301, Q_RESTORE, "AC restoral"),
    ("YT", 302, Q_NEW, "system battery trouble"),
    ("YR", 302, Q_RESTORE, "system battery restoral"),
    ("YC", 350, Q_NEW, "communications fail"),
    ("YK", 350, Q_RESTORE, "communications restoral"),
    ("FT", 373, Q_NEW, "fire trouble"),
    ("FJ", 373, Q_RESTORE, "fire trouble restore"),
    ("OP", 401, Q_NEW, "opening report"),
    ("CL", 401, Q_RESTORE, "closing report"),
    ("OP", 400, Q_NEW, "opening (open/close)"),
    ("CL", 400, Q_RESTORE, "closing (open/close)"),
    ("BB", 570, Q_NEW, "zone bypass"),
    ("BU", 570, Q_RESTORE, "zone unbypass"),
    ("RX", 601, Q_NEW, "manual test"),
    ("RP", 602, Q_NEW, "automatic (periodic) test"),
)


def _first_wins(pairs):
    out = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


SIA_TO_CID = _first_wins((s, (c, q)) for s, c, q, _ in SIA_CID_TABLE)
"""SIA code -> (Contact ID event code, qualifier)."""
CID_TO_SIA = _first_wins(((c, q), s) for s, c, q, _ in SIA_CID_TABLE)
"""(Contact ID event code, qualifier) -> SIA code."""

# SIA-DCS message data (DC-09 5.5.1.7, carrying SIA DC-03 data blocks):
#
#   [#acct|] block [| block]...
#   block   = [N|O] element [/ element]...    new (or old) events
#           | A text                          text for the event before it
#   element = modifier... [CC] [addr] [text]
#
# A modifier is two lower-case letters and a value ("ri1", "ti20:50",
# "id12", "pi3"), optionally followed by a name in carets ("ri1^Hall^"),
# and stays in force for the following events of its block until the
# block sets it again (SIA DC-03 data blocks; DC-09 carries them as they
# are): "Nri1/BA01/ri2/FA05" is a burglary in area 1 and a fire in area 2,
# "Nri1/id12/CL/OP" two reports by user 12 in area 1.  CC is the
# two-letter event code; an element that is only an address repeats the
# code before it ("NBA01/02/03": three burglaries).  Text after the address
# (^FRONT DOOR^) is kept as the event's text.  '/' and '|' inside ^...^
# are text.
_ACCOUNT_PREFIX = re.compile(r"(?:#[0-9A-Fa-f]{3,16})?\|?")
_SIA_MODIFIER = re.compile(r"([a-z]{2})([0-9:.]*)(?:\^([^^]*)\^)?")
_SIA_ELEMENT = re.compile(r"([A-Z]{2})?([0-9]*)(.*)", re.S)
# The modifiers that become event fields; the others (ti, pi, ...) travel
# with the event as they were sent.
MOD_PARTITION = "ri"  # area (partition), DC-03 "ri"
MOD_USER = "id"       # user number, DC-03 "id"


@dataclass
class SiaEvent:
    """One event of a SIA-DCS message, in SIA terms and as the Contact ID
    fields our event model uses.

    sia_code   the two letters sent, e.g. "BA"
    code, qualifier  the Contact ID equivalent (SIA_TO_CID), None when the
               table has no row for sia_code
    partition  the 'ri' in force (0 when none)
    zone       the address; for a user-numbered report (Contact ID 401:
               opening/closing ...) the user; 0 when neither is sent
    user       the 'id' in force, else the address of a user-numbered
               report, else None
    address    the address as sent ("" when none)
    modifiers  every modifier in force, as sent: {"ri": "1", "ti": "20:50"}
    names      names given after modifiers: {"ri": "Hall", "id": "John"}
    text       text after the address, and any 'A' block after the event
    """

    sia_code: str
    code: int | None
    qualifier: int | None
    partition: int
    zone: int
    user: int | None
    address: str = ""
    modifiers: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    text: str = ""


def _split_outside_carets(s: str, sep: str) -> list[str]:
    parts, cur, quoted = [], [], False
    for c in s:
        if c == "^":
            quoted = not quoted
        if c == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _sia_event(code: str, addr: str, text: str, mods: dict, names: dict) -> SiaEvent:
    from protocol import contactid  # noqa: PLC0415 - leaf module, kept out of import time

    cid, qualifier = SIA_TO_CID.get(code, (None, None))
    ri, uid = mods.get(MOD_PARTITION, ""), mods.get(MOD_USER, "")
    user_report = cid is not None and contactid.zone_is_user(cid)
    user = int(uid) if uid.isdigit() else None
    if user is None and user_report and addr:
        user = int(addr)
    if addr:
        zone = int(addr)
    else:
        zone = user if user_report and user is not None else 0
    return SiaEvent(code, cid, qualifier, int(ri) if ri.isdigit() else 0, zone, user, addr,
                    dict(mods), dict(names), text)


def _sia_elements(body: str) -> list[SiaEvent] | None:
    mods: dict = {}
    names: dict = {}
    code = None
    events = []
    for el in _split_outside_carets(body, "/"):
        pos = 0
        while True:
            m = _SIA_MODIFIER.match(el, pos)
            if not m:
                break
            mods[m[1]] = m[2]
            if m[3] is not None:
                names[m[1]] = m[3]
            pos = m.end()
        rest = el[pos:]
        if not rest:
            continue  # modifiers only: they apply to the events that follow
        element = _SIA_ELEMENT.fullmatch(rest)
        assert element is not None  # every group may be empty: any text matches
        c, addr, text = element.groups()
        if c is None:
            if not addr or code is None:
                return None  # text that belongs to no event
            c = code  # "BA01/02": the code before it, repeated
        code = c
        events.append(_sia_event(c, addr, text, mods, names))
    return events or None


def sia_dcs_events(msg: Dc09Message) -> list[SiaEvent]:
    """Every event in a SIA-DCS message, in order (see the grammar above).
    Raises Dc09FormatError when the data has no event or is not the shape
    of SIA data blocks."""
    if msg.msg_id != SIA_DCS:
        raise LocalProtocolError("not a SIA-DCS message: %s" % msg.msg_id)
    prefix = _ACCOUNT_PREFIX.match(msg.data)
    assert prefix is not None  # both parts are optional: it matches at 0 at least
    rest = msg.data[prefix.end():]
    events: list[SiaEvent] = []
    for i, block in enumerate(_split_outside_carets(rest, "|")):
        if i and block[:1] == "A" and events:
            # an ASCII text block (DC-03 'A'): the text of the event before
            last = events[-1]
            last.text = (last.text + " " + block[1:]).strip() if last.text else block[1:]
            continue
        found = None
        # 'N'/'O' flag the block as new/old events; "NA" alone is the SIA
        # code NA, so try the block with the flag taken off, then whole.
        if block[:1] in ("N", "O"):
            found = _sia_elements(block[1:])
        if found is None:
            found = _sia_elements(block)
        if found is None:
            raise Dc09FormatError("account %s: malformed SIA-DCS data %r"
                                  % (msg.account, msg.data))
        events.extend(found)
    if not events:
        raise Dc09FormatError("account %s: no event in SIA-DCS data %r"
                              % (msg.account, msg.data))
    return events


def sia_dcs_to_event(msg: Dc09Message) -> dict:
    """The first SIA event in a SIA-DCS message, as our event model plus the
    SIA side: {'qualifier', 'code', 'partition', 'zone', 'user', 'sia_code',
    'text', 'modifiers'}.  'code' and 'qualifier' are the Contact ID
    equivalent, or None where SIA_TO_CID has no row; 'sia_code' is always
    what was sent.  sia_dcs_events() gives every event of the message."""
    e = sia_dcs_events(msg)[0]
    return {"qualifier": e.qualifier, "code": e.code, "partition": e.partition,
            "zone": e.zone, "user": e.user, "sia_code": e.sia_code, "text": e.text,
            "modifiers": e.modifiers}


# Extended data (DC-09 5.5.1.9): each block is one upper-case letter and a
# value.  The letters this receiver names; any other letter is kept too,
# as "extended data <letter>".  Text is decoded by decode_text().
EXTENDED_DATA = {
    "H": "time of occurrence",
    "I": "alarm text",
    "K": "encryption key",
    "M": "MAC address",
    "R": "room",
    "V": "verification (link to audio or video)",
    "X": "longitude",
    "Y": "latitude",
    "Z": "altitude",
}
# Extended data that must not be stored or shown: a panel changing its key
# sends the new one in [K...] (inside the encrypted region).
SECRET_EXTENDED_DATA = frozenset("K")


def extended_data(msg: Dc09Message) -> dict:
    """The message's extended data as {letter: raw value}, for storing and
    showing: a letter sent twice has its values joined by a newline; a
    secret one (a key) is replaced by a note saying it was withheld."""
    out: dict = {}
    for letter, value in msg.extended:
        if letter in SECRET_EXTENDED_DATA:
            value = "(withheld: %d characters)" % len(value)
        out[letter] = value if letter not in out else out[letter] + "\n" + value
    return out


# Coordinates in X/Y: decimal degrees, signed or with a hemisphere letter
# before or after ("4.8952", "-4.8952", "E4.8952", "4.8952E"), or degrees,
# hemisphere letter and decimal minutes ("004E53.712").
_DEGREES = re.compile(r"([+-]?)([NSEW]?)([0-9]+(?:\.[0-9]+)?)([NSEW]?)")
_DEG_MIN = re.compile(r"([0-9]{1,3})([NSEW])([0-9]{1,2}(?:\.[0-9]+)?)")


def _coordinate(text: str, positive: str, negative: str, top: float) -> float | None:
    t = text.strip().upper()
    m = _DEG_MIN.fullmatch(t)
    if m and m[2] in (positive, negative) and float(m[3]) < 60:
        v = int(m[1]) + float(m[3]) / 60
        v = -v if m[2] == negative else v
    else:
        m = _DEGREES.fullmatch(t)
        if not m or (m[2] and m[4]):
            return None
        hemi = m[2] or m[4]
        if hemi and hemi not in (positive, negative):
            return None
        if hemi and m[1]:
            return None  # a sign and a letter: say it once
        v = float(m[3])
        if m[1] == "-" or hemi == negative:
            v = -v
    return round(v, 7) if -top <= v <= top else None


def location(ext: dict) -> dict | None:
    """{'lat': float, 'lon': float} from extended data Y (latitude) and X
    (longitude), or None when either is missing or not a coordinate."""
    if "X" not in ext or "Y" not in ext:
        return None
    lon = _coordinate(ext["X"], "E", "W", 180.0)
    lat = _coordinate(ext["Y"], "N", "S", 90.0)
    if lat is None or lon is None:
        return None
    return {"lat": lat, "lon": lon}


def event_to_sia_dcs(account: str, event: dict) -> str:
    """SIA-DCS message data for an event: "#acct|NriP/CCzzz[text]".  Uses
    event['sia_code'] when present, else maps (code, qualifier) through
    CID_TO_SIA; an event with neither mapping raises LocalProtocolError."""
    _check_account(account)
    sia_code = event.get("sia_code")
    if sia_code is None:
        key = (event.get("code"), event.get("qualifier"))
        sia_code = CID_TO_SIA.get(key)
        if sia_code is None:
            raise LocalProtocolError("no SIA code for Contact ID %r" % (key,))
    if not isinstance(sia_code, str) or not re.fullmatch(r"[A-Z]{2}", sia_code):
        raise LocalProtocolError("SIA code must be two upper-case letters")
    text = event.get("text") or ""
    _check_text("text", text)
    if text[:1].isdigit():
        raise LocalProtocolError("text must not start with a digit")
    if "/" in text or "|" in text:
        raise LocalProtocolError("text must not contain '/' or '|' (they start events)")
    return "#%s|Nri%d/%s%03d%s" % (
        account, _event_int(event, "partition", 99), sia_code,
        _event_int(event, "zone", 9999), text)
