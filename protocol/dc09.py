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

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import crcmod.predefined
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
    "SIA_CID_TABLE", "SIA_TO_CID", "CID_TO_SIA",
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
    """The CRC field does not match the frame (DC-09 5.5.1.2)."""


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

# CRC and length fields are upper-case hex ("0"-"9", "A"-"F", 5.5.1.2/3).
# Taking lower case too would let a flipped 0x20 bit in a letter of the
# CRC field go unnoticed, since the CRC does not cover its own field.
_HEX4 = re.compile(rb"[0-9A-F]{4}")
# The header up to and including the '[' that opens the data block.  The
# account marker is mandatory here: "#acct", or "A0" which the standard's NAK
# carries (5.5.3.2).  Trying that first makes the hex run after 'L' give
# back "A0" in "R0L0A0[" instead of swallowing it.
_HEADER = re.compile(
    r'"(?P<star>\*?)(?P<id>[A-Z][A-Z0-9-]{0,15})"'
    r"(?P<seq>[0-9]{4})"
    r"(?:R(?P<rcvr>[0-9A-Fa-f]{1,6}))?"
    r"(?:L(?P<line>[0-9A-Fa-f]{1,6}))?"
    r"(?:#(?P<acct>[0-9A-Fa-f]{3,16})|(?P<a0>A0))"
    r"\["
)
# Some receivers send NAK with no account field at all ("NAK"0000R0L0[]).
_HEADER_NO_ACCOUNT = re.compile(
    r'"(?P<star>\*?)(?P<id>NAK)"'
    r"(?P<seq>[0-9]{4})"
    r"(?:R(?P<rcvr>[0-9A-Fa-f]{1,6}))?"
    r"(?:L(?P<line>[0-9A-Fa-f]{1,6}))?"
    r"\["
)
_TIMESTAMP = re.compile(
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}),([0-9]{2})-([0-9]{2})-([0-9]{4})")
_CIPHER_HEX = re.compile(r"(?:[0-9A-Fa-f]{32})+")


def _printable(b: bytes) -> bool:
    # DC-09 frames are ASCII text; control characters (CR/LF above all)
    # never appear between the opening quote and CR.
    return all(0x20 <= c < 0x7F for c in b)


def _split_payload(s: str) -> tuple[str, list[tuple[str, str]], str | None]:
    """Split what follows the opening '[' (decrypted, pad removed) into
    data, extended data and the timestamp text (None when absent)."""
    end = s.find("]")
    if end < 0:
        raise Dc09FormatError("data block not closed with ']'")
    data = s[:end]
    if "[" in data:
        raise Dc09FormatError("'[' inside the data block")
    extended = []
    pos = end + 1
    while pos < len(s) and s[pos] == "[":
        close = s.find("]", pos)
        if close < 0:
            raise Dc09FormatError("extended data block not closed")
        block = s[pos + 1:close]
        # DC-09 5.5.1.9: each extended block starts with its identifier,
        # one upper-case letter.
        if not block or not ("A" <= block[0] <= "Z") or "[" in block:
            raise Dc09FormatError("malformed extended data block")
        extended.append((block[0], block[1:]))
        pos = close + 1
    rest = s[pos:]
    if not rest:
        return data, extended, None
    if rest[0] != "_":
        raise Dc09FormatError("unexpected text after the data blocks")
    return data, extended, rest[1:]


def _timestamp_from_text(text: str) -> datetime | None:
    m = _TIMESTAMP.fullmatch(text)
    if not m:
        return None
    hh, mi, ss, mo, dd, yy = (int(g) for g in m.groups())
    try:
        return datetime(yy, mo, dd, hh, mi, ss, tzinfo=timezone.utc)
    except ValueError:
        return None


def _decrypt(ciphertext: bytes, key: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).decryptor()
    return d.update(ciphertext) + d.finalize()


def _encrypt(plaintext: bytes, key: bytes) -> bytes:
    e = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).encryptor()
    return e.update(plaintext) + e.finalize()


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


def parse(frame, key_lookup=None, now=None, window=DEFAULT_WINDOW) -> Dc09Message:
    """Decode one frame (LF ... CR, as Dc09Reader.next_frame() returns it).

    key_lookup(account: str) -> bytes | None gives the AES key for an
    encrypted message's account (read from the clear header before
    decrypting).  `now` (datetime, UTC; naive is taken as UTC) enables the
    timestamp test for encrypted messages; `window` is (lower, upper) in
    seconds or as timedeltas, of message time minus `now`.

    Raises Dc09CrcError, Dc09FormatError (Dc09OversizeError),
    Dc09TimestampError (with .message, answer NAK), Dc09KeyError (with
    .account).  All are RemoteProtocolError.
    """
    if isinstance(frame, str):
        raise LocalProtocolError("parse() takes bytes, not str")
    raw = bytes(frame)
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
    if int(len_field, 16) != len(body):
        raise Dc09FormatError("length field %s but %d bytes follow"
                              % (len_field.decode(), len(body)))
    if crc16(body) != int(crc_field, 16):
        raise Dc09CrcError("CRC mismatch")
    if not _printable(body):
        raise Dc09FormatError("non-printable byte in the frame body")
    text = body.decode("ascii")

    m = _HEADER.match(text) or _HEADER_NO_ACCOUNT.match(text)
    if not m:
        raise Dc09FormatError("malformed header")
    msg_id = m["id"]
    encrypted = bool(m["star"])
    groups = m.groupdict()
    if groups.get("a0"):
        if msg_id != NAK:
            raise Dc09FormatError("account 'A0' outside a NAK")
        account = "0"
    else:
        account = groups.get("acct") or ""
    rest = text[m.end():]

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
        region = _strip_pad(_decrypt(bytes.fromhex(rest), bytes(key)), msg_id)
        if region is None or not _printable(region):
            _LOGGER.debug("DC-09 account %s: does not decrypt", account)
            raise Dc09KeyError("account %s: region does not decrypt to a "
                               "DC-09 payload (wrong key?)" % account, account)
        rest = region.decode("ascii")

    data, extended, ts_text = _split_payload(rest)
    msg = Dc09Message(
        msg_id=msg_id, encrypted=encrypted, seq=int(m["seq"]),
        receiver=m["rcvr"], line=m["line"], account=account, data=data,
        extended=extended, timestamp=None,
    )
    if ts_text is not None:
        ts = _timestamp_from_text(ts_text)
        if ts is None:
            raise Dc09TimestampError("invalid timestamp %r" % ts_text, msg)
        msg.timestamp = ts
    if encrypted:
        # DC-09 5.5.1.8: encrypted messages carry a timestamp, and it must
        # fall inside the receiver's window.
        if msg.timestamp is None:
            raise Dc09TimestampError("encrypted message without timestamp", msg)
        if now is not None:
            _check_window(msg, now, window)
    return msg


def _as_utc(t: datetime) -> datetime:
    if not isinstance(t, datetime):
        raise LocalProtocolError("time must be a datetime")
    if t.tzinfo is None:
        return t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def _seconds(x) -> timedelta:
    return x if isinstance(x, timedelta) else timedelta(seconds=x)


def _check_window(msg: Dc09Message, now, window) -> None:
    lower, upper = (_seconds(w) for w in window)
    delta = msg.timestamp - _as_utc(now)
    if not lower <= delta <= upper:
        raise Dc09TimestampError(
            "account %s: timestamp %s is %+.0f s from receiver time"
            % (msg.account, msg.timestamp.isoformat(), delta.total_seconds()),
            msg)


# --- building -----------------------------------------------------------------

_TOKEN = re.compile(r"[A-Z][A-Z0-9-]{0,15}")
_HEX_1_6 = re.compile(r"[0-9A-Fa-f]{1,6}")
_ACCOUNT = re.compile(r"[0-9A-Fa-f]{3,16}")


def _check_text(name: str, s) -> None:
    if not isinstance(s, str) or not all(0x20 <= ord(c) < 0x7F for c in s):
        raise LocalProtocolError("%s must be printable ASCII" % name)
    if "[" in s or "]" in s:
        raise LocalProtocolError("%s must not contain '[' or ']'" % name)


def _format_timestamp(t: datetime) -> str:
    t = _as_utc(t)
    return _TIMESTAMP_FMT % (t.hour, t.minute, t.second, t.month, t.day, t.year)


def random_pad(n: int) -> bytes:
    """`n` pad bytes from os.urandom, none of them '|', '[' or ']'
    (DC-09 5.4.4.2); see _PAD_ALPHABET for why they are printable."""
    out = bytearray()
    while len(out) < n:
        # Rejection sampling keeps every allowed byte equally likely.
        for b in os.urandom(2 * (n - len(out)) + 8):
            if b & 0x7F in _PAD_SET:
                out.append(b & 0x7F)
                if len(out) == n:
                    break
    return bytes(out)



def pad_length(payload_len: int) -> int:
    """Pad bytes for a region whose part after the pad ('|' included) is
    `payload_len` bytes: 1..16, a full 16 when already aligned (5.4.4.3)."""
    return _AES_BLOCK - payload_len % _AES_BLOCK


def build(msg: Dc09Message, key: bytes | None = None, pad: bytes | None = None) -> bytes:
    """Encode `msg` as one frame.  An encrypted message needs `key` (16/24/32
    bytes) and a timestamp; `pad` (tests, golden vectors) replaces the
    random pad and must be long enough to align the region."""
    if not isinstance(msg.msg_id, str) or not _TOKEN.fullmatch(msg.msg_id):
        raise LocalProtocolError("bad ID token %r" % (msg.msg_id,))
    if (not isinstance(msg.seq, int) or isinstance(msg.seq, bool)
            or not 0 <= msg.seq <= SEQ_LAST):
        raise LocalProtocolError("sequence number must be 0..9999")
    for name, value in (("receiver", msg.receiver), ("line", msg.line)):
        if value is not None and (not isinstance(value, str)
                                  or not _HEX_1_6.fullmatch(value)):
            raise LocalProtocolError("%s must be 1-6 hex digits" % name)
    if msg.msg_id == NAK and msg.account == "0":
        account_field = "A0"  # the standard NAK's fixed account (5.5.3.2)
    elif isinstance(msg.account, str) and _ACCOUNT.fullmatch(msg.account):
        account_field = "#" + msg.account
    else:
        raise LocalProtocolError("account must be 3-16 hex digits")
    _check_text("data", msg.data)
    if not isinstance(msg.extended, (list, tuple)):
        raise LocalProtocolError("extended must be a list of (letter, value)")
    parts = [msg.data, "]"]
    for item in msg.extended:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise LocalProtocolError("extended data items are (letter, value)")
        letter, value = item
        if not isinstance(letter, str) or len(letter) != 1 or not "A" <= letter <= "Z":
            raise LocalProtocolError("extended data letter must be A-Z")
        _check_text("extended data", value)
        parts.append("[%s%s]" % (letter, value))
    if msg.timestamp is not None:
        parts.append("_" + _format_timestamp(msg.timestamp))
    payload = "".join(parts).encode("ascii")

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
    if encrypted and now is None:
        raise LocalProtocolError("the ACK to an encrypted message needs `now`")
    ack = Dc09Message(
        msg_id=ACK, encrypted=encrypted, seq=for_msg.seq,
        receiver=for_msg.receiver, line=for_msg.line,
        account=for_msg.account, data="", extended=[],
        timestamp=_as_utc(now) if encrypted else None,
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
        frame = bytes(buf[first:end + 1])
        del buf[:end + 1]
        if len(frame) > MAX_FRAME_LEN:
            raise Dc09OversizeError("frame longer than %d bytes" % MAX_FRAME_LEN)
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

# SIA-DCS message data (DC-09 5.5.1.7, SIA DC-03 blocks):
#   [#acct|] [N|O] modifiers... CC addr [text]
# modifiers are two lower-case letters and a value ("ri1", "ti20:50",
# "id12"), each optionally followed by '/'; CC is the two-letter event
# code; addr the zone/user number; anything after is kept as `text`
# (e.g. "^FRONT DOOR^", or further '/'-separated events).
_SIA_DCS_DATA = re.compile(
    r"(?:#(?P<acct>[0-9A-Fa-f]{3,16}))?\|?"
    r"(?P<flag>[NO])?"
    r"(?P<mods>(?:[a-z]{2}[0-9:.]*/?)*)"
    r"(?P<code>[A-Z]{2})(?P<addr>[0-9]*)(?P<text>.*)", re.S)
_SIA_MODIFIER = re.compile(r"([a-z]{2})([0-9:.]*)/?")


def sia_dcs_to_event(msg: Dc09Message) -> dict:
    """The SIA event in a SIA-DCS message, as our event model plus the SIA
    side: {'qualifier', 'code', 'partition', 'zone', 'sia_code', 'text',
    'modifiers'}.  'code' and 'qualifier' are the Contact ID equivalent, or
    None where SIA_TO_CID has no row; 'sia_code' is always what was sent."""
    if msg.msg_id != SIA_DCS:
        raise LocalProtocolError("not a SIA-DCS message: %s" % msg.msg_id)
    m = _SIA_DCS_DATA.fullmatch(msg.data)
    if not m:
        raise Dc09FormatError("account %s: malformed SIA-DCS data %r"
                              % (msg.account, msg.data))
    modifiers = dict(_SIA_MODIFIER.findall(m["mods"]))
    ri = modifiers.get("ri", "")
    sia_code = m["code"]
    code, qualifier = SIA_TO_CID.get(sia_code, (None, None))
    return {
        "qualifier": qualifier, "code": code,
        "partition": int(ri) if ri.isdigit() else 0,
        "zone": int(m["addr"]) if m["addr"] else 0,
        "sia_code": sia_code, "text": m["text"], "modifiers": modifiers,
    }


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
    return "#%s|Nri%d/%s%03d%s" % (
        account, _event_int(event, "partition", 99), sia_code,
        _event_int(event, "zone", 9999), text)
