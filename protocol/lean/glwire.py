# Guardline wire protocol v1: the lean codec.
#
# This module is the protocol as the firmware carries it.  It runs unchanged
# under MicroPython (ESP32, RP2040, unix port) and CPython, so it uses only
# the subset both share: struct, hashlib.sha256, binascii.crc32, the AES of
# MicroPython's `cryptolib` (a shim with the same API stands in on CPython),
# no dataclasses, no typing, no f-string format tricks.
#
# One codec, two runtimes: the checksums, HMAC and AES-CBC below are the
# portable code MicroPython runs.  Under CPython (the receiver, the host
# tools) the same functions come from C instead (cpython_cryptolib: the
# hashlib states and an OpenSSL AES context kept per key, binascii.crc_hqx,
# hmac.compare_digest): same results, a fraction of the steps.
# use_portable(True) forces the portable code under CPython; the
# differential tests run the codec both ways (tests/test_lean_vs_spec.py).
#
# The normative definition is protocol/spec.py (construct).  Tests prove
# this codec byte-identical to it, under CPython and under the real
# MicroPython VM.  docs/protocol.md has the byte tables.
#
# Frame (all integers big-endian):
#
#   off  len  field
#   0    2    sync "GL"
#   2    1    version (1)
#   3    1    flags (FLAG_*; reserved bits must be 0)
#   4    4    account
#   8    4    sequence (per sender, strictly increasing, never reused)
#   12   4    timestamp (sender's clock, Unix seconds UTC; 0 = clock unset)
#   16   1    message type (MSG_*)
#   17   2    body length L (32..256, a multiple of 16)
#   19   2    header CRC-16/CCITT-FALSE over bytes 0..18
#   21   L    body: IV (16) + AES-256-CBC(enc_key, IV, PKCS#7(payload))
#   21+L 16   MAC: HMAC-SHA256(mac_key, bytes 0..21+L-1), first 16 bytes
#   37+L 4    frame CRC-32 (binascii/zlib) over bytes 0..37+L-1
#
# Invariants:
# - The header CRC lets a stream decoder trust the length before it buffers
#   a body, and resynchronise on the next "GL" after noise.
# - The frame CRC tells line noise (NAK bad CRC, the sender resends) from
#   forgery (bad MAC: a security event).  Only the MAC is a security check.
# - Encrypt-then-MAC with two keys derived from the account's master key;
#   the MAC covers the clear header, so account, sequence, timestamp, type
#   and direction cannot be altered.
# - Decoders raise WireError (a RemoteProtocolError on the host) and nothing
#   else for any input; encoders raise EncodeError for out-of-range fields.
#   Wire data is never checked with assert.

import struct
import binascii
from array import array
from hashlib import sha256

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]  (CPython fallback below)
except ImportError:  # CPython
    def const(x):
        return x

try:
    from cryptolib import aes
    _host = None
except ImportError:  # CPython: a shim with cryptolib's API over `cryptography`, and C primitives
    from protocol.lean import cpython_cryptolib as _host  # pyright: ignore[reportMissingImports]  (host-only package)
    aes = _host.aes

try:
    from os import urandom
except ImportError:  # pragma: no cover - every supported port has it
    from uos import urandom

try:
    from protocol.errors import RemoteProtocolError as _RemoteBase  # pyright: ignore[reportMissingImports]  (host-only package)
    from protocol.errors import LocalProtocolError as _LocalBase  # pyright: ignore[reportMissingImports]  (host-only package)
except ImportError:  # MicroPython: the firmware has no host package
    class _RemoteBase(Exception):
        def __init__(self, msg, reason=0):
            # super(), not Exception.__init__: MicroPython's built-in
            # exception types expose no __init__ attribute.
            super().__init__(msg)
            self.reason = reason

    _LocalBase = ValueError


VERSION = const(1)
SYNC = b"GL"
HEADER_LEN = const(21)
IV_LEN = const(16)
MAC_LEN = const(16)  # HMAC-SHA256 truncated to 128 bits (RFC 2104 sec. 5)
CRC_LEN = const(4)
MIN_BODY_LEN = const(32)  # IV + one AES block
# The largest body a v1 frame may carry.  The biggest payload is an EVENT
# with a 32-byte text (11 + 1 + 32 + 4 = 48 bytes); 256 leaves room for
# later fields while keeping a frame (297 bytes) inside one UDP datagram on
# any link and inside a small RX buffer on the board.
MAX_BODY_LEN = const(256)
MAX_FRAME_LEN = const(297)  # HEADER_LEN + MAX_BODY_LEN + MAC_LEN + CRC_LEN
MIN_FRAME_LEN = const(73)
MAX_TEXT_LEN = const(32)  # bytes of UTF-8 in an EVENT's text
MAX_PARTITIONS = const(8)
# Sequence bounds (docs/protocol.md section 9), one rule for both ends.
# A receiver accepts a frame at most MAX_SEQ_JUMP past the highest sequence
# it accepted from that panel: a panel runs ahead of a receiver only by what
# it sent where that receiver did not hear it (a month on another receiver
# at a frame a minute: 43,200) and by the numbers a reboot skips (at most
# 255 each; a panel rebooting every 30 s for three weeks: ~15.5 M).
MAX_SEQ_JUMP = const(0x1000000)  # 2^24
# The highest next_seq a NAK replay may carry.  A receiver never asks for
# more (it restarts a spent account instead) and a panel accepts any
# next_seq above its own sequence up to this; 2^31 leaves a panel told to
# continue there 68 years of frames at one a second.  Not const(): it is
# beyond a small int on 32-bit ports.
MAX_NEXT_SEQ = 0x80000000

# flags
FLAG_FROM_RECEIVER = const(0x01)  # direction: defeats reflecting a frame back
FLAG_BACKUP_PATH = const(0x02)  # sent on the panel's backup path
FLAG_CLOCK_UNSET = const(0x04)  # sender's clock has not been set yet
FLAGS_KNOWN = const(0x07)

# message types
MSG_HELLO = const(0x01)
MSG_EVENT = const(0x02)
MSG_HEARTBEAT = const(0x03)
MSG_POSITION = const(0x04)  # v1.1: a vehicle unit's track point
MSG_ACK = const(0x10)
MSG_NAK = const(0x11)
MSG_TIME = const(0x12)
MSG_COMMAND = const(0x20)
MSG_REPLY = const(0x21)

MSG_NAMES = {
    MSG_HELLO: "HELLO", MSG_EVENT: "EVENT", MSG_HEARTBEAT: "HEARTBEAT",
    MSG_POSITION: "POSITION", MSG_ACK: "ACK", MSG_NAK: "NAK", MSG_TIME: "TIME",
    MSG_COMMAND: "COMMAND", MSG_REPLY: "REPLY",
}

# NAK reason codes
NAK_BAD_CRC = const(1)
NAK_BAD_MAC = const(2)
NAK_REPLAY = const(3)
NAK_UNKNOWN_ACCOUNT = const(4)
NAK_BUSY = const(5)
NAK_UNSUPPORTED = const(6)
NAK_TIME = const(7)
NAK_MALFORMED = const(8)

NAK_NAMES = {
    NAK_BAD_CRC: "bad_crc", NAK_BAD_MAC: "bad_mac", NAK_REPLAY: "replay",
    NAK_UNKNOWN_ACCOUNT: "unknown_account", NAK_BUSY: "busy",
    NAK_UNSUPPORTED: "unsupported", NAK_TIME: "time",
    NAK_MALFORMED: "malformed",
}

# Contact ID qualifiers (SIA DC-05)
Q_NEW = const(1)
Q_RESTORE = const(3)
Q_STATUS = const(6)

# EVENT extension bits
EXT_TEXT = const(0x01)
EXT_VALUE = const(0x02)
EXT_POSITION = const(0x04)  # v1.1: a position record follows

# The position record (v1.1; EVENT ext bit 2 and POSITION): format byte,
# lat/lon s32 micro-degrees, speed u16 0.1 km/h, course u16 0.1 degree,
# fix quality, satellites, HDOP 0.1 (u8 each), fix time u32, flags u8.
POSITION_FORMAT = const(1)
POSITION_LEN = const(21)
MAX_LAT_UDEG = const(90000000)
MAX_LON_UDEG = const(180000000)
MAX_COURSE = const(3599)
MAX_FIX_QUALITY = const(8)
POS_VALID = const(0x01)  # a current fix (else the last known position)
POS_MOVING = const(0x02)
POS_IGNITION = const(0x04)
POS_ALARM = const(0x08)  # an alarm is active: the unit reports faster
POS_FLAGS_KNOWN = const(0x0F)
MAX_POSITION_REASON = const(8)

# panel kinds (HELLO)
KIND_DOOR = const(1)
KIND_BANK = const(2)
KIND_VEHICLE = const(3)  # a cash-in-transit van (docs/mobile.md)
KIND_PATROL = const(4)  # a patrol car: a vehicle unit with a crew status

# partition states, as carried in HEARTBEAT and REPLY
P_DISARMED = const(0)
P_EXIT_DELAY = const(1)
P_ARMED_AWAY = const(2)
P_ARMED_STAY = const(3)
P_ENTRY_DELAY = const(4)
P_ALARM = const(5)

# COMMAND codes
CMD_STATUS = const(1)
CMD_ARM_AWAY = const(2)
CMD_ARM_STAY = const(3)
CMD_DISARM = const(4)
CMD_BYPASS = const(5)
CMD_UNBYPASS = const(6)

# REPLY results
R_OK = const(0)
R_REFUSED = const(1)
R_UNSUPPORTED = const(2)
R_BAD_ARGUMENT = const(3)

# trouble bits (HEARTBEAT, REPLY)
T_AC_LOSS = const(0x0001)
T_LOW_BATTERY = const(0x0002)
T_BOX_TAMPER = const(0x0004)
T_PATH1_FAIL = const(0x0008)
T_PATH2_FAIL = const(0x0010)
T_CLOCK_UNSET = const(0x0020)
T_CONFIG = const(0x0040)
T_SIREN = const(0x0080)


class WireError(_RemoteBase):  # pyright: ignore[reportGeneralTypeIssues]  (host class on CPython, the fallback on a board)
    """The peer's bytes break the protocol.  `reason` is a NAK_* code."""


class EncodeError(_LocalBase):  # pyright: ignore[reportGeneralTypeIssues]  (host class on CPython, the fallback on a board)
    """A message we were asked to build has a field out of range."""


class _NeedData:
    def __repr__(self):
        return "NEED_DATA"


NEED_DATA = _NeedData()


# --- checksums -------------------------------------------------------------

def _make_crc16_table():
    # CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0.
    # An array('H') is 512 bytes; a list of ints would be 2 KB on a 64-bit
    # port and 1 KB on ESP32/RP2040, out of a heap of a few dozen KB.
    t = array("H", range(256))
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t[i] = c & 0xFFFF
    return t


_CRC16 = _make_crc16_table()


def crc16(data, start=0, end=None):
    if end is None:
        end = len(data)
    c = 0xFFFF
    t = _CRC16
    for i in range(start, end):
        c = ((c << 8) & 0xFFFF) ^ t[(c >> 8) ^ data[i]]
    return c


def crc32(data):
    return binascii.crc32(data) & 0xFFFFFFFF


# --- HMAC-SHA256 and keys ----------------------------------------------------

def hmac_sha256(key, data):
    # RFC 2104; MicroPython has hashlib.sha256 but no hmac module.
    if len(key) > 64:
        key = sha256(key).digest()
    ipad = bytearray(64)
    opad = bytearray(64)
    for i in range(len(key)):
        ipad[i] = key[i]
        opad[i] = key[i]
    for i in range(64):
        ipad[i] ^= 0x36
        opad[i] ^= 0x5C
    h = sha256(ipad)
    h.update(data)
    inner = h.digest()
    h = sha256(opad)
    h.update(inner)
    return h.digest()


def equal_ct(a, b):
    """Constant-time comparison (the MAC check must not leak a prefix)."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


class Keys:
    """The per-account keys: one master key, two derived keys so that the
    cipher key and the MAC key are never the same (docs/protocol.md, 4).
    `ctx`: what the runtime keeps per key to go faster (CPython: hash states
    and an AES context, made on first use), None until then."""

    def __init__(self, master):
        if len(master) < 16 or len(master) > 64:
            raise EncodeError("account key must be 16..64 bytes")
        self.enc = hmac_sha256(master, b"guardline v1 enc")
        self.mac = hmac_sha256(master, b"guardline v1 mac")
        self.ctx = None


def frame_mac(keys, data):
    """The frame MAC: HMAC-SHA256 under the MAC key, first MAC_LEN bytes."""
    return hmac_sha256(keys.mac, data)[:MAC_LEN]


def aes_cbc(keys, iv, data, encrypt):
    """AES-256-CBC under the cipher key: whole blocks in, whole blocks out."""
    out = bytearray(len(data))
    if encrypt:
        aes(keys.enc, 2, iv).encrypt(data, out)
    else:
        aes(keys.enc, 2, iv).decrypt(data, out)
    return out


_PORTABLE = (crc16, hmac_sha256, equal_ct, frame_mac, aes_cbc)
PRIMITIVES = "portable"


def use_portable(portable):
    """Run the codec on the portable primitives above (always so under
    MicroPython) or, under CPython unless `portable`, on the runtime's C
    ones.  PRIMITIVES says which: "portable" or "cpython"."""
    global crc16, hmac_sha256, equal_ct, frame_mac, aes_cbc, PRIMITIVES
    if portable or _host is None:
        crc16, hmac_sha256, equal_ct, frame_mac, aes_cbc = _PORTABLE
        PRIMITIVES = "portable"
    else:
        crc16, hmac_sha256, equal_ct, frame_mac, aes_cbc = _host.FAST
        PRIMITIVES = "cpython"


use_portable(False)


# --- payloads ----------------------------------------------------------------

def _check(value, lo, hi, name):
    if not isinstance(value, int) or value < lo or value > hi:
        raise EncodeError("%s out of range: %r" % (name, value))
    return value


def _u8(m, k):
    return _check(m[k], 0, 0xFF, k)


def _u16(m, k):
    return _check(m[k], 0, 0xFFFF, k)


def _u32(m, k):
    return _check(m[k], 0, 0xFFFFFFFF, k)


def _partitions(m):
    p = m["partitions"]
    if len(p) > MAX_PARTITIONS:
        raise EncodeError("too many partitions")
    out = bytearray(1 + len(p))
    out[0] = len(p)
    for i in range(len(p)):
        out[1 + i] = _check(p[i], 0, 0xFF, "partition state")
    return bytes(out)


def _position(p):
    """A position dict -> its 21-byte record."""
    return struct.pack(">BiiHHBBBIB", POSITION_FORMAT,
                       _check(p["lat"], -MAX_LAT_UDEG, MAX_LAT_UDEG, "lat"),
                       _check(p["lon"], -MAX_LON_UDEG, MAX_LON_UDEG, "lon"),
                       _u16(p, "speed"), _check(p["course"], 0, MAX_COURSE, "course"),
                       _check(p["quality"], 0, MAX_FIX_QUALITY, "quality"), _u8(p, "sats"),
                       _u8(p, "hdop"), _u32(p, "fix_time"),
                       _check(p["flags"], 0, POS_FLAGS_KNOWN, "position flags"))


def _take_position(p, off):
    """The record at p[off:off + 21] -> a position dict (WireError if bad)."""
    if off + POSITION_LEN > len(p):
        raise _bad("position missing")
    fmt, lat, lon, speed, course, q, sats, hdop, ft, fl = struct.unpack_from(">BiiHHBBBIB",
                                                                              p, off)
    if fmt != POSITION_FORMAT:
        raise _bad("position format %d" % fmt)
    if lat < -MAX_LAT_UDEG or lat > MAX_LAT_UDEG or lon < -MAX_LON_UDEG or lon > MAX_LON_UDEG:
        raise _bad("position out of range")
    if course > MAX_COURSE or q > MAX_FIX_QUALITY or fl & ~POS_FLAGS_KNOWN:
        raise _bad("bad position field")
    return {"lat": lat, "lon": lon, "speed": speed, "course": course, "quality": q,
            "sats": sats, "hdop": hdop, "fix_time": ft, "flags": fl}


def encode_payload(m):
    """Message dict -> payload bytes (the plaintext inside the body).
    Raises EncodeError, and nothing else, for a message it cannot encode."""
    try:
        return _encode_payload(m)
    except EncodeError:
        raise
    except Exception as e:  # KeyError, TypeError, struct.error, UnicodeError...
        raise EncodeError("cannot encode message: %r" % (e,))


def _encode_payload(m):
    t = m["type"]
    if t == MSG_EVENT:
        q = m["qualifier"]
        if not isinstance(q, int) or (q != Q_NEW and q != Q_RESTORE and q != Q_STATUS):
            raise EncodeError("qualifier must be 1, 3 or 6")
        code = _check(m["code"], 0, 999, "code")
        text = m.get("text")
        value = m.get("value")
        ext = 0
        tail = b""
        if text is not None:
            if not isinstance(text, str):
                raise EncodeError("text must be a str")
            tb = text.encode("utf-8")
            if len(tb) > MAX_TEXT_LEN:
                raise EncodeError("text longer than 32 bytes")
            ext |= EXT_TEXT
            tail = bytes([len(tb)]) + tb
        if value is not None:
            ext |= EXT_VALUE
            tail += struct.pack(">i", _check(value, -0x80000000, 0x7FFFFFFF, "value"))
        pos = m.get("position")
        if pos is not None:
            ext |= EXT_POSITION
            tail += _position(pos)
        return struct.pack(">BHBHIB", q, code, _u8(m, "partition"), _u16(m, "zone"),
                           _u32(m, "event_time"), ext) + tail
    if t == MSG_HEARTBEAT:
        return struct.pack(">HHBH", _u16(m, "troubles"), _u16(m, "battery_mv"),
                           _u8(m, "active_path"), _u16(m, "queue_depth")) + _partitions(m)
    if t == MSG_POSITION:
        return bytes([_check(m["reason"], 0, MAX_POSITION_REASON, "reason")]) + \
            _position(m["position"])
    if t == MSG_ACK:
        return struct.pack(">I", _u32(m, "ack_seq"))
    if t == MSG_NAK:
        _check(m["reason"], 1, 8, "reason")
        return struct.pack(">IBII", _u32(m, "nak_seq"), m["reason"],
                           _u32(m, "receiver_time"), _u32(m, "next_seq"))
    if t == MSG_HELLO:
        return struct.pack(">BBBBHBBI", _u8(m, "fw_major"), _u8(m, "fw_minor"),
                           _u8(m, "fw_patch"), _u8(m, "panel_kind"), _u16(m, "capabilities"),
                           _u8(m, "zones"), _u8(m, "partition_count"), _u32(m, "heartbeat_s"))
    if t == MSG_TIME:
        return struct.pack(">IIh", _u32(m, "ref_seq"), _u32(m, "receiver_time"),
                           _check(m["utc_offset_min"], -720, 840, "utc_offset_min"))
    if t == MSG_COMMAND:
        return struct.pack(">BBHH", _check(m["command"], 1, 6, "command"),
                           _u8(m, "partition"), _u16(m, "arg"), _u16(m, "user"))
    if t == MSG_REPLY:
        return struct.pack(">IBH", _u32(m, "command_seq"), _check(m["result"], 0, 3, "result"),
                           _u16(m, "troubles")) + _partitions(m)
    raise EncodeError("unknown message type %r" % (t,))


def utf8_valid(b):
    """Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
    above U+10FFFF.  MicroPython's bytes.decode checks only the byte
    structure, so the firmware would otherwise accept what CPython rejects."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            k = 1
        elif c == 0xE0:
            k = 2
            lo = 0xA0
        elif 0xE1 <= c <= 0xEC or c == 0xEE or c == 0xEF:
            k = 2
        elif c == 0xED:
            k = 2
            hi = 0x9F
        elif c == 0xF0:
            k = 3
            lo = 0x90
        elif 0xF1 <= c <= 0xF3:
            k = 3
        elif c == 0xF4:
            k = 3
            hi = 0x8F
        else:
            return False
        if i + k >= n:
            return False
        if not (lo <= b[i + 1] <= hi):
            return False
        for j in range(i + 2, i + k + 1):
            if not (0x80 <= b[j] <= 0xBF):
                return False
        i += k + 1
    return True


def _bad(msg):
    return WireError(msg, NAK_MALFORMED)


def _take_partitions(p, off):
    if off >= len(p):
        raise _bad("partitions missing")
    n = p[off]
    if n > MAX_PARTITIONS:
        raise _bad("too many partitions")
    if off + 1 + n != len(p):
        raise _bad("payload length")
    return list(p[off + 1:off + 1 + n])


def decode_payload(t, p):
    """(type, payload bytes) -> message dict.  Raises WireError only."""
    n = len(p)
    if t == MSG_EVENT:
        if n < 11:
            raise _bad("EVENT too short")
        q, code, part, zone, et, ext = struct.unpack_from(">BHBHIB", p, 0)
        if q != Q_NEW and q != Q_RESTORE and q != Q_STATUS:
            raise _bad("bad qualifier")
        if code > 999:
            raise _bad("bad event code")
        if ext & ~(EXT_TEXT | EXT_VALUE | EXT_POSITION):
            raise _bad("reserved extension bits set")
        off = 11
        text = None
        value = None
        if ext & EXT_TEXT:
            if off >= n:
                raise _bad("text missing")
            tl = p[off]
            if tl > MAX_TEXT_LEN or off + 1 + tl > n:
                raise _bad("bad text length")
            tb = bytes(p[off + 1:off + 1 + tl])
            if not utf8_valid(tb):
                raise _bad("text is not UTF-8")
            text = tb.decode("utf-8")
            off += 1 + tl
        if ext & EXT_VALUE:
            if off + 4 > n:
                raise _bad("value missing")
            value = struct.unpack_from(">i", p, off)[0]
            off += 4
        pos = None
        if ext & EXT_POSITION:
            pos = _take_position(p, off)
            off += POSITION_LEN
        if off != n:
            raise _bad("payload length")
        m = {"type": t, "qualifier": q, "code": code, "partition": part,
             "zone": zone, "event_time": et, "text": text, "value": value}
        if pos is not None:
            m["position"] = pos  # v1.1: only when present
        return m
    if t == MSG_POSITION:
        if n != 1 + POSITION_LEN:
            raise _bad("payload length")
        if p[0] > MAX_POSITION_REASON:
            raise _bad("bad position reason")
        return {"type": t, "reason": p[0], "position": _take_position(p, 1)}
    if t == MSG_HEARTBEAT:
        if n < 8:
            raise _bad("HEARTBEAT too short")
        tr, bat, path, qd = struct.unpack_from(">HHBH", p, 0)
        return {"type": t, "troubles": tr, "battery_mv": bat, "active_path": path,
                "queue_depth": qd, "partitions": _take_partitions(p, 7)}
    if t == MSG_ACK:
        if n != 4:
            raise _bad("payload length")
        return {"type": t, "ack_seq": struct.unpack_from(">I", p, 0)[0]}
    if t == MSG_NAK:
        if n != 13:
            raise _bad("payload length")
        s, r, rt, ns = struct.unpack_from(">IBII", p, 0)
        if r < 1 or r > 8:
            raise _bad("bad NAK reason")
        return {"type": t, "nak_seq": s, "reason": r, "receiver_time": rt, "next_seq": ns}
    if t == MSG_HELLO:
        if n != 12:
            raise _bad("payload length")
        a, b, c, k, cap, z, pc, hb = struct.unpack_from(">BBBBHBBI", p, 0)
        return {"type": t, "fw_major": a, "fw_minor": b, "fw_patch": c, "panel_kind": k,
                "capabilities": cap, "zones": z, "partition_count": pc, "heartbeat_s": hb}
    if t == MSG_TIME:
        if n != 10:
            raise _bad("payload length")
        rs, rt, off = struct.unpack_from(">IIh", p, 0)
        if off < -720 or off > 840:
            raise _bad("bad UTC offset")
        return {"type": t, "ref_seq": rs, "receiver_time": rt, "utc_offset_min": off}
    if t == MSG_COMMAND:
        if n != 6:
            raise _bad("payload length")
        c, part, arg, user = struct.unpack_from(">BBHH", p, 0)
        if c < 1 or c > 6:
            raise _bad("bad command")
        return {"type": t, "command": c, "partition": part, "arg": arg, "user": user}
    if t == MSG_REPLY:
        if n < 8:
            raise _bad("REPLY too short")
        cs, res, tr = struct.unpack_from(">IBH", p, 0)
        if res > 3:
            raise _bad("bad result")
        return {"type": t, "command_seq": cs, "result": res, "troubles": tr,
                "partitions": _take_partitions(p, 7)}
    raise WireError("unsupported message type %d" % t, NAK_UNSUPPORTED)


# --- frames ------------------------------------------------------------------

class Frame:
    """A frame whose header CRC and frame CRC are good: integrity against
    noise only.  `open_frame` authenticates and decrypts it."""

    def __init__(self, raw):
        self.raw = raw
        (self.version, self.flags, self.account, self.seq, self.timestamp,
         self.mtype, self.body_len) = struct.unpack_from(">BBIIIBH", raw, 2)

    def mac(self):
        return self.raw[HEADER_LEN + self.body_len:HEADER_LEN + self.body_len + MAC_LEN]

    def __repr__(self):
        return "Frame(account=%d, seq=%d, type=%s, ts=%d, flags=%d)" % (
            self.account, self.seq, MSG_NAMES.get(self.mtype, self.mtype),
            self.timestamp, self.flags)


class BadFrame:
    """A frame whose header is intact but whose frame CRC is wrong (line
    noise).  The header fields are trustworthy enough to NAK bad CRC."""

    def __init__(self, header):
        (self.version, self.flags, self.account, self.seq, self.timestamp,
         self.mtype, self.body_len) = struct.unpack_from(">BBIIIBH", header, 2)

    def __repr__(self):
        return "BadFrame(account=%d, seq=%d)" % (self.account, self.seq)


def _header_ok(buf, off):
    """Is there a plausible header at buf[off:off+21]?"""
    if crc16(buf, off, off + 19) != (buf[off + 19] << 8 | buf[off + 20]):
        return False
    blen = buf[off + 17] << 8 | buf[off + 18]
    return MIN_BODY_LEN <= blen <= MAX_BODY_LEN and blen % 16 == 0


def seal(keys, msg, account, seq, timestamp, flags=0, iv=None):
    """Build one complete frame carrying `msg` (a dict with "type")."""
    _check(account, 0, 0xFFFFFFFF, "account")
    _check(seq, 0, 0xFFFFFFFF, "seq")
    _check(timestamp, 0, 0xFFFFFFFF, "timestamp")
    if flags & ~FLAGS_KNOWN:
        raise EncodeError("unknown flag bits")
    payload = encode_payload(msg)
    pad = 16 - len(payload) % 16  # PKCS#7: always 1..16 bytes
    plain = bytearray(len(payload) + pad)
    plain[:len(payload)] = payload
    for i in range(len(payload), len(plain)):
        plain[i] = pad
    body_len = IV_LEN + len(plain)
    if body_len > MAX_BODY_LEN:
        raise EncodeError("message too large")
    if iv is None:
        iv = urandom(IV_LEN)
    elif len(iv) != IV_LEN:
        raise EncodeError("IV must be 16 bytes")
    total = HEADER_LEN + body_len + MAC_LEN + CRC_LEN
    f = bytearray(total)
    f[0] = 0x47  # 'G'
    f[1] = 0x4C  # 'L'
    struct.pack_into(">BBIIIBH", f, 2, VERSION, flags, account, seq, timestamp,
                     msg["type"], body_len)
    struct.pack_into(">H", f, 19, crc16(f, 0, 19))
    f[HEADER_LEN:HEADER_LEN + IV_LEN] = iv
    f[HEADER_LEN + IV_LEN:HEADER_LEN + body_len] = aes_cbc(keys, iv, plain, True)
    end = HEADER_LEN + body_len
    f[end:end + MAC_LEN] = frame_mac(keys, memoryview(f)[:end])
    struct.pack_into(">I", f, end + MAC_LEN, crc32(memoryview(f)[:end + MAC_LEN]))
    return bytes(f)


def open_frame(keys, frame):
    """Authenticate and decrypt a Frame; return the message dict.
    Checks the MAC, then version and flags; replay and time checks belong
    to the session.  The MAC comes first: the CRCs carry no key, so a
    header altered by an attacker must be reported as a forgery (bad MAC),
    never as an honest peer's version or flag mistake."""
    raw = frame.raw
    end = HEADER_LEN + frame.body_len
    mac = frame_mac(keys, memoryview(raw)[:end])
    if not equal_ct(mac, raw[end:end + MAC_LEN]):
        raise WireError("bad MAC", NAK_BAD_MAC)
    if frame.version != VERSION:
        raise WireError("unsupported version %d" % frame.version, NAK_UNSUPPORTED)
    if frame.flags & ~FLAGS_KNOWN:
        raise WireError("reserved flag bits set", NAK_MALFORMED)
    iv = bytes(raw[HEADER_LEN:HEADER_LEN + IV_LEN])
    plain = aes_cbc(keys, iv, bytes(raw[HEADER_LEN + IV_LEN:end]), False)
    pad = plain[-1]
    # The MAC is good, so bad padding means a broken sender, not an attacker
    # probing a padding oracle (the MAC is checked first: encrypt-then-MAC).
    if pad < 1 or pad > 16:
        raise WireError("bad padding", NAK_MALFORMED)
    for i in range(len(plain) - pad, len(plain)):
        if plain[i] != pad:
            raise WireError("bad padding", NAK_MALFORMED)
    return decode_payload(frame.mtype, memoryview(plain)[:len(plain) - pad])


def decode_datagram(data):
    """One frame per UDP datagram: the datagram must be exactly one frame."""
    n = len(data)
    if n < MIN_FRAME_LEN or n > MAX_FRAME_LEN:
        raise WireError("bad datagram length %d" % n, NAK_MALFORMED)
    if data[0] != 0x47 or data[1] != 0x4C or not _header_ok(data, 0):
        raise WireError("bad header", NAK_BAD_CRC)
    body_len = data[17] << 8 | data[18]
    if n != HEADER_LEN + body_len + MAC_LEN + CRC_LEN:
        raise WireError("datagram length does not match header", NAK_MALFORMED)
    end = n - CRC_LEN
    if crc32(memoryview(data)[:end]) != struct.unpack_from(">I", data, end)[0]:
        raise WireError("bad frame CRC", NAK_BAD_CRC)
    return Frame(bytes(data))


# Bound on what a FrameReader holds: one whole frame plus one read's worth.
# Adapters read at most READ_SIZE bytes and drain next_frame() before the
# next read, so the buffer never needs more.
READ_SIZE = const(1024)
MAX_BUFFER = const(1321)  # MAX_FRAME_LEN + READ_SIZE


class FrameReader:
    """Sans-I/O stream decoder for TCP and serial lines.

    receive_data(b) buffers; next_frame() returns a Frame, a BadFrame (intact
    header, bad CRC: noise), or NEED_DATA.  Noise between frames is skipped
    and counted in `discarded`; the decoder resynchronises on the next good
    header.  It never holds more than MAX_BUFFER bytes."""

    def __init__(self):
        self._buf = bytearray()
        self.discarded = 0
        self.closed = False

    def receive_data(self, data):
        if len(self._buf) + len(data) > MAX_BUFFER:
            raise WireError("receive buffer overflow: drain next_frame() first",
                            NAK_MALFORMED)
        self._buf.extend(data)

    def _skip(self, n):
        self.discarded += n
        self._buf = self._buf[n:]

    def next_frame(self):
        while True:
            buf = self._buf
            i = buf.find(SYNC)
            if i < 0:
                # no sync word: keep a trailing 'G' that may start one
                keep = 1 if buf and buf[-1] == 0x47 else 0
                if len(buf) - keep:
                    self._skip(len(buf) - keep)
                return NEED_DATA
            if i:
                self._skip(i)
                buf = self._buf
            n = len(buf)
            if n < HEADER_LEN:
                return NEED_DATA
            if not _header_ok(buf, 0):
                self._skip(1)
                continue
            total = HEADER_LEN + (buf[17] << 8 | buf[18]) + MAC_LEN + CRC_LEN
            if n < total:
                return NEED_DATA
            end = total - CRC_LEN
            mv = memoryview(buf)
            good = crc32(mv[:end]) == struct.unpack_from(">I", buf, end)[0]
            if good:
                raw = bytes(mv[:total])
                self._buf = buf[total:]
                return Frame(raw)
            hdr = bytes(mv[:HEADER_LEN])
            # Skip only the sync word: a real frame may start inside what
            # the bad header claimed as its body.
            self._skip(2)
            return BadFrame(hdr)
