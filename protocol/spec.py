"""Guardline wire protocol v1: the normative definition, in construct.

This module *is* the v1 wire format.  The lean codec the firmware carries
(protocol/lean/glwire.py) is a second implementation of it, and the tests
prove the two byte-identical under CPython (tests/test_lean_vs_spec.py) and
under the real MicroPython VM (tests/test_lean_micropython.py).
docs/protocol.md explains the format for humans; where this module and the
document disagree, this module wins and the document is the bug.

Layers, outermost first (all integers big-endian):

- `Frame`: header + body (IV + ciphertext) + MAC + CRC-32 over all of it.
- `Header` (21 bytes): sync "GL", version, flags, account, seq, timestamp,
  type, body_len, and a CRC-16/CCITT-FALSE of its own, so that a stream
  reader can trust body_len before it buffers a body and can resynchronise
  on the next "GL" after line noise.
- `Payload`: one struct per message type, chosen by a `Switch` on the
  header's type.  Field names are exactly the keys of the message dicts the
  lean codec uses (glwire.encode_payload / decode_payload), so a message is
  the same dict on both sides.

The body is IV (16) + AES-256-CBC(enc_key, IV, PKCS#7(payload)); the MAC is
HMAC-SHA256(mac_key, header + body) truncated to 16 bytes (encrypt-then-MAC,
so the clear header is authenticated too); enc_key and mac_key are derived
from the account's master key (`derive_keys`).

Invariants this module keeps:

- `parse_*` raise `RemoteProtocolError` (with `.reason` a NAK_* code) and
  nothing else, whatever bytes they are given; `build_*` raise
  `LocalProtocolError` for any message they cannot build.  construct's own
  exceptions never escape.
- `parse_frame` runs its checks in the order a receiver must
  (docs/protocol.md, "Order of checks"): length, header CRC, frame CRC,
  MAC, then version and flags, padding and payload.  Nothing but the
  lengths is interpreted before the MAC has passed, and a forged frame is
  always reported as a bad MAC, never as "unsupported" or "malformed".
- Every `Check`, `If`, `Rebuild` and `Switch` uses `this` expressions, not
  lambdas, so `.compile()` yields a genuinely compiled parser.  The only
  lambdas are the CRC spans, and `Checksum` runs as a linked (interpreted)
  instance inside compiled code anyway.  Both variants are exposed:
  `Header`/`Payload`/`Frame` and `HeaderCompiled`/`PayloadCompiled`/
  `FrameCompiled`; the functions take `compiled=True` to use the latter.
"""

import hashlib
import hmac
import json
import struct
from typing import Any

import crcmod.predefined
from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Check,
    Checksum,
    ChecksumError,
    Const,
    Construct,
    ConstructError,
    Enum,
    Error,
    ExplicitError,
    ExprValidator,
    Flag,
    FocusedSeq,
    If,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32sb,
    Int32ub,
    PascalString,
    PrefixedArray,
    Rebuild,
    Struct,
    Switch,
    Tell,
    Terminated,
    len_,
    obj_,
    this,
)
from cryptography.hazmat.primitives import padding as _pkcs7
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.header_words import header_problem

# --- numbers (defined here, independently of the lean codec; a test checks
# that glwire carries the same ones) -----------------------------------------

VERSION = 1
SYNC = b"GL"
HEADER_LEN = 21
IV_LEN = 16  # one AES block
MAC_LEN = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 sec. 5)
CRC_LEN = 4
MIN_BODY_LEN = 32  # IV + one block: PKCS#7 always adds at least one byte
# 256 keeps a whole frame (297 bytes) inside one UDP datagram on any path and
# inside a small RX buffer on the board; the largest v1 payload is 48 bytes.
MAX_BODY_LEN = 256
MIN_FRAME_LEN = HEADER_LEN + MIN_BODY_LEN + MAC_LEN + CRC_LEN  # 73
MAX_FRAME_LEN = HEADER_LEN + MAX_BODY_LEN + MAC_LEN + CRC_LEN  # 297
MAX_TEXT_LEN = 32  # bytes of UTF-8 in an EVENT text (a keypad line)
MAX_PARTITIONS = 8  # partitions a v1 panel can report
MIN_KEY_LEN = 16  # master key: 128 bits at least
MAX_KEY_LEN = 64  # one SHA-256 block; longer keys would be hashed (RFC 2104)

ENC_LABEL = b"guardline v1 enc"
MAC_LABEL = b"guardline v1 mac"

FLAG_FROM_RECEIVER = 0x01  # direction bit: a frame cannot be reflected back
FLAG_BACKUP_PATH = 0x02  # sent on the panel's backup path
FLAG_CLOCK_UNSET = 0x04  # the sender's clock has not been set yet
FLAGS_KNOWN = 0x07

MSG_HELLO = 0x01
MSG_EVENT = 0x02
MSG_HEARTBEAT = 0x03
MSG_POSITION = 0x04  # v1.1: a vehicle unit's track point (docs/mobile.md)
MSG_ACK = 0x10
MSG_NAK = 0x11
MSG_TIME = 0x12
MSG_COMMAND = 0x20
MSG_REPLY = 0x21

MSG_NAMES = {
    MSG_HELLO: "HELLO", MSG_EVENT: "EVENT", MSG_HEARTBEAT: "HEARTBEAT",
    MSG_POSITION: "POSITION", MSG_ACK: "ACK", MSG_NAK: "NAK", MSG_TIME: "TIME",
    MSG_COMMAND: "COMMAND", MSG_REPLY: "REPLY",
}

NAK_BAD_CRC = 1
NAK_BAD_MAC = 2
NAK_REPLAY = 3
NAK_UNKNOWN_ACCOUNT = 4
NAK_BUSY = 5
NAK_UNSUPPORTED = 6
NAK_TIME = 7
NAK_MALFORMED = 8

NAK_NAMES = {
    NAK_BAD_CRC: "bad_crc", NAK_BAD_MAC: "bad_mac", NAK_REPLAY: "replay",
    NAK_UNKNOWN_ACCOUNT: "unknown_account", NAK_BUSY: "busy",
    NAK_UNSUPPORTED: "unsupported", NAK_TIME: "time",
    NAK_MALFORMED: "malformed",
}

# Contact ID event qualifiers (SIA DC-05): new event / opening, restore /
# closing, status report.
Q_NEW = 1
Q_RESTORE = 3
Q_STATUS = 6
MAX_EVENT_CODE = 999  # Contact ID event codes are three decimal digits

CMD_MIN, CMD_MAX = 1, 6  # STATUS, ARM_AWAY, ARM_STAY, DISARM, BYPASS, UNBYPASS
RESULT_MAX = 3  # OK, REFUSED, UNSUPPORTED, BAD_ARGUMENT
UTC_OFFSET_MIN, UTC_OFFSET_MAX = -720, 840  # UTC-12:00 .. UTC+14:00

# The position record (v1.1, docs/protocol.md "Position record"): EVENT
# ext bit 2 and the POSITION message carry it.  Its first byte is its
# format; 1 is the only one.
POSITION_FORMAT = 1
POSITION_LEN = 21
MAX_LAT_UDEG = 90_000_000  # micro-degrees
MAX_LON_UDEG = 180_000_000
MAX_COURSE = 3599  # 0.1 degree
MAX_FIX_QUALITY = 8  # NMEA GGA fix quality 0..8
POS_VALID = 0x01  # a current fix (else the last known position)
POS_MOVING = 0x02
POS_IGNITION = 0x04
POS_ALARM = 0x08  # an alarm is active: the unit reports faster
POS_FLAGS_KNOWN = 0x0F
MAX_POSITION_REASON = 8  # why a track point was sent: 0 unspecified, 1..8 (docs/mobile.md)

# --- checksums -----------------------------------------------------------------

crc16 = crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")
crc32 = crcmod.predefined.mkPredefinedCrcFun("crc-32")


def _span(start, end):
    """Context function for `Checksum`: the stream bytes between the two
    `Tell` marks `start` and `end` of the same struct.  Parse and build both
    run over a seekable BytesIO, so reading back is possible in both."""

    def covered(ctx):
        io = ctx._io
        here = io.tell()
        io.seek(ctx[start])
        data = io.read(ctx[end] - ctx[start])
        io.seek(here)
        return data

    return covered


# --- header ------------------------------------------------------------------

MsgType = Enum(Int8ub, **{name: t for t, name in MSG_NAMES.items()})

# Bit 0 is the least significant; reserved bits parse (so that a receiver
# can say *why* it rejects a frame, after the MAC) but must be zero.
Flags = BitStruct(
    "reserved" / BitsInteger(5),
    "clock_unset" / Flag,
    "backup_path" / Flag,
    "from_receiver" / Flag,
)

Header = Struct(
    "_start" / Tell,
    "sync" / Const(SYNC),
    "version" / Int8ub,  # checked after the MAC: an unknown version is NAK 6
    "flags" / Flags,
    "account" / Int32ub,
    "seq" / Int32ub,  # per sender, strictly increasing, never reused
    "timestamp" / Int32ub,  # sender's clock, Unix seconds UTC; 0 = unset
    "type" / MsgType,
    "body_len" / Int16ub,
    "_end" / Tell,
    "header_crc" / Checksum(Int16ub, crc16, _span("_start", "_end")),
    # A header whose length is impossible is not a header: a stream reader
    # treats it as noise, a datagram receiver as a bad CRC.
    Check((this.body_len >= MIN_BODY_LEN) & (this.body_len <= MAX_BODY_LEN)
          & (this.body_len % 16 == 0)),
)

Body = Struct(
    "iv" / Bytes(IV_LEN),
    "ciphertext" / Bytes(this._.header.body_len - IV_LEN),
)

Frame = Struct(
    "_start" / Tell,
    "header" / Header,
    "body" / Body,
    "mac" / Bytes(MAC_LEN),  # verified by parse_frame, after the frame CRC
    "_end" / Tell,
    "frame_crc" / Checksum(Int32ub, crc32, _span("_start", "_end")),
    Terminated,
)

# --- payloads ------------------------------------------------------------------

Position = Struct(
    "_format" / Const(POSITION_FORMAT, Int8ub),
    "lat" / Int32sb,  # micro-degrees, + north
    Check((this.lat >= -MAX_LAT_UDEG) & (this.lat <= MAX_LAT_UDEG)),
    "lon" / Int32sb,  # micro-degrees, + east
    Check((this.lon >= -MAX_LON_UDEG) & (this.lon <= MAX_LON_UDEG)),
    "speed" / Int16ub,  # 0.1 km/h
    "course" / Int16ub,  # 0.1 degree true
    Check(this.course <= MAX_COURSE),
    "quality" / Int8ub,  # GGA fix quality
    Check(this.quality <= MAX_FIX_QUALITY),
    "sats" / Int8ub,
    "hdop" / Int8ub,  # 0.1; 255 = 25.5 or worse
    "fix_time" / Int32ub,  # Unix seconds UTC of the fix; 0 = unknown
    "flags" / Int8ub,  # POS_*; reserved bits 0
    Check((this.flags & (0xFF ^ POS_FLAGS_KNOWN)) == 0),
)

Event = Struct(
    "qualifier" / Int8ub,
    Check((this.qualifier == Q_NEW) | (this.qualifier == Q_RESTORE)
          | (this.qualifier == Q_STATUS)),
    "code" / Int16ub,
    Check(this.code <= MAX_EVENT_CODE),
    "partition" / Int8ub,
    "zone" / Int16ub,
    "event_time" / Int32ub,  # panel clock when the event happened
    # Which optional fields follow; rebuilt from text/value on build.
    "ext" / BitStruct(
        "reserved" / Const(0, BitsInteger(5)),
        "position" / Rebuild(Flag, this._.position != None),  # noqa: E711 - v1.1
        "value" / Rebuild(Flag, this._.value != None),  # noqa: E711 - construct expression
        "text" / Rebuild(Flag, this._.text != None),  # noqa: E711
    ),
    "text" / If(this.ext.text,
                PascalString(ExprValidator(Int8ub, obj_ <= MAX_TEXT_LEN), "utf8")),
    "value" / If(this.ext.value, Int32sb),
    "position" / If(this.ext.position, Position),  # where the vehicle unit was
)

PositionReport = Struct(
    "reason" / Int8ub,
    Check(this.reason <= MAX_POSITION_REASON),
    "position" / Position,
)

Heartbeat = Struct(
    "troubles" / Int16ub,  # T_* bits
    "battery_mv" / Int16ub,
    "active_path" / Int8ub,
    "queue_depth" / Int16ub,  # events waiting for an ACK
    "partitions" / PrefixedArray(Int8ub, Int8ub),  # one state per partition
    Check(len_(this.partitions) <= MAX_PARTITIONS),
)

Hello = Struct(
    "fw_major" / Int8ub,
    "fw_minor" / Int8ub,
    "fw_patch" / Int8ub,
    "panel_kind" / Int8ub,
    "capabilities" / Int16ub,
    "zones" / Int8ub,
    "partition_count" / Int8ub,
    "heartbeat_s" / Int32ub,
)

Ack = Struct(
    "ack_seq" / Int32ub,  # the panel sequence being acknowledged
)

Nak = Struct(
    "nak_seq" / Int32ub,
    "reason" / Int8ub,
    Check((this.reason >= NAK_BAD_CRC) & (this.reason <= NAK_MALFORMED)),
    "receiver_time" / Int32ub,  # lets a panel with a bad clock resync (NAK 7)
    "next_seq" / Int32ub,  # lets a panel whose counter was reset jump (NAK 3)
)

Time = Struct(
    "ref_seq" / Int32ub,
    "receiver_time" / Int32ub,
    "utc_offset_min" / Int16sb,
    Check((this.utc_offset_min >= UTC_OFFSET_MIN) & (this.utc_offset_min <= UTC_OFFSET_MAX)),
)

Command = Struct(
    "command" / Int8ub,
    Check((this.command >= CMD_MIN) & (this.command <= CMD_MAX)),
    "partition" / Int8ub,
    "arg" / Int16ub,
    "user" / Int16ub,
)

Reply = Struct(
    "command_seq" / Int32ub,  # the receiver sequence of the COMMAND
    "result" / Int8ub,
    Check(this.result <= RESULT_MAX),
    "troubles" / Int16ub,
    "partitions" / PrefixedArray(Int8ub, Int8ub),
    Check(len_(this.partitions) <= MAX_PARTITIONS),
)

PAYLOADS: dict[int, Construct] = {
    MSG_HELLO: Hello, MSG_EVENT: Event, MSG_HEARTBEAT: Heartbeat, MSG_POSITION: PositionReport,
    MSG_ACK: Ack, MSG_NAK: Nak, MSG_TIME: Time,
    MSG_COMMAND: Command, MSG_REPLY: Reply,
}

# The type travels in the header, not in the payload: parse and build take
# it as the context keyword `type`.  An unknown type is an `Error`
# (ExplicitError), which the functions below report as NAK unsupported.
# The per-type structs above are layouts (with a static sizeof where they
# have one); a payload is exactly one of them with nothing after it.
Payload = FocusedSeq(
    "payload",
    "payload" / Switch(this._.type, PAYLOADS, default=Error),
    Terminated,
)

# Fixed-size payloads have a static sizeof; the others raise SizeofError.
STATIC_SIZES = {MSG_HELLO: 12, MSG_ACK: 4, MSG_NAK: 13, MSG_TIME: 10, MSG_COMMAND: 6,
                MSG_POSITION: 1 + POSITION_LEN}

HeaderCompiled = Header.compile()
PayloadCompiled = Payload.compile()
FrameCompiled = Frame.compile()


class _Variant:
    def __init__(self, header, payload, frame):
        self.header = header
        self.payload = payload
        self.frame = frame


_INTERPRETED = _Variant(Header, Payload, Frame)
_COMPILED = _Variant(HeaderCompiled, PayloadCompiled, FrameCompiled)


def _variant(compiled):
    return _COMPILED if compiled else _INTERPRETED


# --- conversions between construct containers and plain values ---------------

def _int(v):
    """An Enum field's value as a plain int (EnumIntegerString or int)."""
    iv = getattr(v, "intvalue", None)
    return int(v) if iv is None else iv


def flags_to_int(f):
    return (f.reserved << 3) | (f.clock_unset << 2) | (f.backup_path << 1) | f.from_receiver


def flags_from_int(flags):
    return {
        "reserved": flags >> 3,
        "clock_unset": bool(flags & FLAG_CLOCK_UNSET),
        "backup_path": bool(flags & FLAG_BACKUP_PATH),
        "from_receiver": bool(flags & FLAG_FROM_RECEIVER),
    }


def flag_names(flags):
    names = []
    for bit, name in ((FLAG_FROM_RECEIVER, "from_receiver"),
                      (FLAG_BACKUP_PATH, "backup_path"),
                      (FLAG_CLOCK_UNSET, "clock_unset")):
        if flags & bit:
            names.append(name)
    if flags & ~FLAGS_KNOWN:
        names.append("reserved:0x%02x" % (flags & ~FLAGS_KNOWN))
    return names


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()
                if not k.startswith("_") and k != "ext"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _header_dict(h):
    return {
        "version": h.version,
        "flags": flags_to_int(h.flags),
        "account": h.account,
        "seq": h.seq,
        "timestamp": h.timestamp,
        "type": _int(h.type),
        "body_len": h.body_len,
        "header_crc": h.header_crc,
    }


# --- payloads: functions ---------------------------------------------------------

# Exceptions construct lets through from inside a build: missing keys, values
# of the wrong type, text that cannot be encoded, and struct.error from the
# compiled builders (which pack without construct's own range checks).
_BUILD_ERRORS = (ConstructError, KeyError, TypeError, ValueError, AttributeError,
                 OverflowError, struct.error)
# ... and from inside a parse: text that is not UTF-8, and struct.error from
# the compiled parsers (which unpack short reads without a StreamError).
_PARSE_ERRORS = (ConstructError, UnicodeDecodeError, struct.error)


def build_payload(msg, compiled=False):
    """Message dict (with "type") -> payload bytes.  Raises LocalProtocolError."""
    try:
        t = msg["type"]
        obj = dict(msg)
        if t == MSG_EVENT:
            obj.setdefault("text", None)  # optional fields may be left out
            obj.setdefault("value", None)
            obj.setdefault("position", None)
        return _variant(compiled).payload.build(obj, type=t)
    except ExplicitError:
        raise LocalProtocolError("unknown message type %r" % (msg.get("type"),)) from None
    except _BUILD_ERRORS as e:
        raise LocalProtocolError("cannot build %r: %s" % (msg, e)) from e


def parse_payload(msg_type, data, compiled=False):
    """(type, payload bytes) -> message dict, the same dict the lean codec
    returns.  Raises RemoteProtocolError: NAK unsupported for an unknown
    type, NAK malformed for anything else."""
    t = _int(msg_type)
    data = bytes(data)
    try:
        if compiled:
            c = PayloadCompiled.parse(data, type=t)
            # construct's compiler emits a bare io.read(n) for byte strings
            # (the EVENT text), so a text cut short does not fail there.  The
            # v1 encoding is canonical (one encoding per message), so the
            # parse is proven by building it back.
            if PayloadCompiled.build(c, type=t) != data:
                raise RemoteProtocolError("malformed %s payload" % MSG_NAMES[t], NAK_MALFORMED)
        else:
            c = Payload.parse(data, type=t)
    except ExplicitError:
        raise RemoteProtocolError("unsupported message type %d" % t, NAK_UNSUPPORTED) from None
    except _PARSE_ERRORS as e:
        raise RemoteProtocolError("malformed %s payload: %s" % (MSG_NAMES[t], e),
                                  NAK_MALFORMED) from None
    msg = {"type": t}
    msg.update(_plain(c))
    if t == MSG_EVENT and msg.get("position") is None:
        # v1.1: the key is there only when the EVENT carries a position, so
        # a v1 EVENT reads as the same dict as before
        msg.pop("position", None)
    return msg


# --- keys and crypto ------------------------------------------------------------

class Keys:
    """enc and mac keys derived from one account master key, so that the
    cipher key and the MAC key are never the same key."""

    def __init__(self, master):
        try:
            master = bytes(master)
        except TypeError:
            raise LocalProtocolError("account key must be bytes") from None
        if not MIN_KEY_LEN <= len(master) <= MAX_KEY_LEN:
            raise LocalProtocolError("account key must be %d..%d bytes"
                                     % (MIN_KEY_LEN, MAX_KEY_LEN))
        self.enc = hmac.new(master, ENC_LABEL, hashlib.sha256).digest()
        self.mac = hmac.new(master, MAC_LABEL, hashlib.sha256).digest()


def derive_keys(master):
    return master if isinstance(master, Keys) else Keys(master)


def frame_mac(mac_key, authenticated):
    """HMAC-SHA256 over header + body, truncated to MAC_LEN."""
    return hmac.new(mac_key, authenticated, hashlib.sha256).digest()[:MAC_LEN]


def encrypt(enc_key, iv, payload):
    padder = _pkcs7.PKCS7(128).padder()
    plain = padder.update(payload) + padder.finalize()
    e = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    return e.update(plain) + e.finalize()


def decrypt(enc_key, iv, ciphertext):
    """-> payload; RemoteProtocolError (malformed) on bad padding.  Only ever
    called after the MAC has passed, so there is no padding oracle."""
    d = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
    plain = d.update(ciphertext) + d.finalize()
    unpadder = _pkcs7.PKCS7(128).unpadder()
    try:
        return unpadder.update(plain) + unpadder.finalize()
    except ValueError:
        raise RemoteProtocolError("bad padding", NAK_MALFORMED) from None


# --- frames ------------------------------------------------------------------------

def _u32(name, v):
    if not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
        raise LocalProtocolError("%s out of range: %r" % (name, v))


def build_frame(master_key, msg, account, seq, timestamp, flags=0, iv=None,
                compiled=False):
    """Seal `msg` into one complete frame.  `iv` is 16 bytes; None draws a
    fresh random one (every frame, retransmissions included, gets its own).
    Raises LocalProtocolError."""
    keys = derive_keys(master_key)
    _u32("account", account)
    _u32("seq", seq)
    _u32("timestamp", timestamp)
    if not isinstance(flags, int) or flags < 0 or flags & ~FLAGS_KNOWN:
        raise LocalProtocolError("unknown flag bits: %r" % (flags,))
    if iv is None:
        import os
        iv = os.urandom(IV_LEN)
    iv = bytes(iv)
    if len(iv) != IV_LEN:
        raise LocalProtocolError("IV must be %d bytes" % IV_LEN)
    v = _variant(compiled)
    payload = build_payload(msg, compiled)
    ciphertext = encrypt(keys.enc, iv, payload)
    header = {
        "version": VERSION, "flags": flags_from_int(flags), "account": account,
        "seq": seq, "timestamp": timestamp, "type": msg["type"],
        "body_len": IV_LEN + len(ciphertext),
    }
    body = {"iv": iv, "ciphertext": ciphertext}
    try:
        authenticated = v.header.build(header) + iv + ciphertext
    except _BUILD_ERRORS as e:
        raise LocalProtocolError("message too large for a v1 frame: %s" % e) from e
    return v.frame.build({"header": header, "body": body,
                          "mac": frame_mac(keys.mac, authenticated)})


def _check_lengths_and_crcs(data, v):
    """Length, header CRC, frame CRC: integrity against line noise only.
    -> the parsed Frame container."""
    n = len(data)
    if n < MIN_FRAME_LEN or n > MAX_FRAME_LEN:
        raise RemoteProtocolError("bad frame length %d" % n, NAK_MALFORMED)
    try:
        header = v.header.parse(data[:HEADER_LEN])
    except _PARSE_ERRORS:
        raise RemoteProtocolError("bad header", NAK_BAD_CRC) from None
    if n != HEADER_LEN + header.body_len + MAC_LEN + CRC_LEN:
        raise RemoteProtocolError("frame length does not match header", NAK_MALFORMED)
    try:
        return v.frame.parse(data)
    except ChecksumError:
        raise RemoteProtocolError("bad frame CRC", NAK_BAD_CRC) from None
    except _PARSE_ERRORS as e:  # pragma: no cover - lengths were checked above
        raise RemoteProtocolError("malformed frame: %s" % e, NAK_MALFORMED) from None


def parse_frame(master_key, frame, compiled=False):
    """Check, authenticate and decrypt one frame.

    -> {"version", "flags", "account", "seq", "timestamp", "type",
        "body_len", "header_crc", "iv", "mac", "message"}

    Raises RemoteProtocolError with `.reason`: NAK bad_crc (header or frame
    CRC), bad_mac, unsupported (version, type), malformed (length, reserved
    flags, padding, payload).  Replay and time-window checks need session
    state and belong to the receiver (protocol/session.py)."""
    keys = derive_keys(master_key)
    v = _variant(compiled)
    data = bytes(frame)
    f = _check_lengths_and_crcs(data, v)
    h = _header_dict(f.header)
    end = HEADER_LEN + h["body_len"]
    if not hmac.compare_digest(frame_mac(keys.mac, data[:end]), f.mac):
        raise RemoteProtocolError("bad MAC", NAK_BAD_MAC)
    # Authenticated from here on: what follows is a sender's mistake (or a
    # newer sender), not forgery.
    if h["version"] != VERSION:
        raise RemoteProtocolError("unsupported version %d" % h["version"], NAK_UNSUPPORTED)
    if h["flags"] & ~FLAGS_KNOWN:
        raise RemoteProtocolError("reserved flag bits set", NAK_MALFORMED)
    payload = decrypt(keys.enc, f.body.iv, f.body.ciphertext)
    h["iv"] = f.body.iv
    h["mac"] = f.mac
    h["message"] = parse_payload(h["type"], payload, compiled)
    return h


def _from_hex(v, what):
    if isinstance(v, str):
        try:
            return bytes.fromhex("".join(v.split()))
        except ValueError:
            raise LocalProtocolError("%s is not hex" % what) from None
    return v


def describe(frame, key=None):
    """A frame, explained: a JSON-ready dict for `guardline-receiver decode`.

    `frame` and `key` may be bytes or hex strings (whitespace allowed).
    Never raises for bad wire data: what could not be checked is reported
    under "error": "reason" is the NAK a receiver would send (null for bytes
    with no header to address one to), "reason_name" names the problem
    (a NAK name, or "no_header" / "cut_short": protocol/header_words.py),
    "detail" says it in words.  With a key the
    message is decrypted and shown; without one the body is shown as hex.
    Raises LocalProtocolError for a string that is not hex or a key of the
    wrong length (the caller's mistakes, not the frame's)."""
    frame = _from_hex(frame, "frame")
    key = None if key is None else _from_hex(key, "key")
    if key is not None:
        key = derive_keys(key)  # a key of the wrong length is the caller's error
    data = bytes(frame)
    out: dict[str, Any] = {"length": len(data)}

    def fail(e):
        out["error"] = {"reason": e.reason, "reason_name": NAK_NAMES.get(e.reason, "?"),
                        "detail": str(e)}
        return out

    problem = header_problem(data)  # named and worded as the lean fallback does
    if problem is not None:
        out["error"] = problem.as_json()
        return out
    try:
        header = Header.parse(data[:HEADER_LEN])
    except ConstructError as e:  # pragma: no cover - header_problem checked what parse checks
        return fail(RemoteProtocolError("malformed header: %s" % e, NAK_MALFORMED))
    h = _header_dict(header)
    out.update(h)
    out["type_name"] = MSG_NAMES.get(h["type"], "unknown")
    out["flag_names"] = flag_names(h["flags"])
    out["direction"] = ("receiver->panel" if h["flags"] & FLAG_FROM_RECEIVER
                        else "panel->receiver")
    end = HEADER_LEN + h["body_len"]
    out["iv"] = data[HEADER_LEN:HEADER_LEN + IV_LEN].hex()
    out["body"] = data[HEADER_LEN + IV_LEN:end].hex()
    out["mac"] = data[end:end + MAC_LEN].hex()
    if key is None:
        try:
            _check_lengths_and_crcs(data, _INTERPRETED)
        except RemoteProtocolError as e:
            return fail(e)
        return out
    try:
        out["message"] = parse_frame(key, data)["message"]
    except RemoteProtocolError as e:
        return fail(e)
    return out


def describe_json(frame, key=None):
    return json.dumps(describe(frame, key), indent=2, ensure_ascii=False)
