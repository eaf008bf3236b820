# SIA DC-09 (ANSI/SIA DC-09-2013) for the panel: the lean codec.
#
# The firmware reports to third-party central stations over DC-09 with this
# module: it builds ADM-CID (Contact ID) events and NULL link tests, plain
# or AES-encrypted, and parses the receiver's ACK / NAK / DUH replies.  It
# runs unchanged under MicroPython and CPython, so it keeps to their shared
# subset: binascii, array, os.urandom, MicroPython's `cryptolib.aes` (a shim
# with the same API stands in on CPython); no re, no dataclasses, no typing,
# no f-strings.
#
# The host codec protocol/dc09.py is the reference; tests prove
# build_adm_cid()/build_null() byte-identical to dc09.build() for the same
# fields and pad, and parse_reply() in agreement with dc09.parse(), under
# CPython and under the real MicroPython VM.  docs/dc09.md has the format.
#
# Frame (DC-09 5.5.1):
#   LF crc 0LLL "[*]ID" seq [Rrcvr] Lpref #acct [data] [x-data] _timestamp CR
# crc = CRC-16/ARC over the text from the opening quote to before CR
# (5.5.1.2); 0LLL = '0' + 3 hex digits, the length of that text (5.5.1.3).
#
# Encryption (5.4): AES-CBC, all-zero IV (5.4.6), over the region after the
# '[' that opens the data block: pad '|' data ']' [x-data] _timestamp
# (5.4.4.1).  The pad never holds '|', '[' or ']' (5.4.4.2) and makes the
# region a multiple of 16 bytes, a full 16 when it already is one (5.4.4.3).
#
# Invariants:
# - parse_reply() raises Dc09ReplyError (a RemoteProtocolError on the host)
#   for any input, and Dc09UsageError (a LocalProtocolError) only for our
#   own bad key; builders raise Dc09UsageError for out-of-range fields.
# - AES-192 needs a port whose cryptolib has it (mbedTLS ports do, axTLS
#   ones such as the unix port do not): key_size_supported() tells.  Wire data is
#   never checked with assert.
# - A reply longer than MAX_REPLY_LEN is rejected before it is looked at.

import binascii
from array import array

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]  (CPython fallback below)
except ImportError:  # CPython
    def const(x):
        return x

try:
    from cryptolib import aes
except ImportError:  # CPython: a shim with cryptolib's API over `cryptography`
    from protocol.lean.cpython_cryptolib import aes  # pyright: ignore[reportMissingImports]  (host-only package)

try:
    from os import urandom
except ImportError:  # pragma: no cover - every supported port has it
    from uos import urandom

try:
    from protocol.errors import RemoteProtocolError as _RemoteBase  # pyright: ignore[reportMissingImports]  (host-only package)
    from protocol.errors import LocalProtocolError as _LocalBase  # pyright: ignore[reportMissingImports]  (host-only package)
except ImportError:  # MicroPython: the firmware has no host package
    class _RemoteBase(Exception):
        pass

    _LocalBase = ValueError


_MODE_CBC = const(2)  # cryptolib's MODE_CBC
_BLOCK = const(16)
_ZERO_IV = bytes(16)  # DC-09 5.4.6: CBC with an all-zero IV

# The length field's 3 hex digits (DC-09 5.5.1.3) bound a frame body.
MAX_BODY_LEN = const(0xFFF)
# Replies are a header (at most 44 bytes: "*ACK", seq, R and L of 6 digits,
# a 16-digit account) and an empty data block, plus a timestamp and maybe an
# extended block or two; encrypted, that is well under 256 bytes.  512 keeps
# the panel's RX buffer small and still takes any reply a receiver sends.
MAX_REPLY_LEN = const(512)

SEQ_FIRST = const(1)  # DC-09 5.5.1.5: 0001..9999, then 0001 again
SEQ_LAST = const(9999)

# Contact ID qualifiers (SIA DC-05)
Q_NEW = const(1)
Q_RESTORE = const(3)
Q_STATUS = const(6)

_HEX = "0123456789ABCDEFabcdef"
_DIGITS = "0123456789"
# What may stand between a reply's sequence number and its '[': R, L, the
# '#' account marker, hex digits, and the NAK's "A0" (hex already).
_REPLY_HEADER_CHARS = "0123456789ABCDEFabcdefRL#"
_PAD_FORBIDDEN = b"|[]"  # DC-09 5.4.4.2
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class Dc09ReplyError(_RemoteBase):  # pyright: ignore[reportGeneralTypeIssues]  (host class on CPython, the fallback on a board)
    """A reply from the receiver that must be rejected."""


class Dc09UsageError(_LocalBase):  # pyright: ignore[reportGeneralTypeIssues]  (host class on CPython, the fallback on a board)
    """Our misuse: a field out of range, a bad key, or an AES key size this
    port's cryptolib does not implement."""


# --- CRC-16/ARC (DC-09 5.5.1.2): poly 0x8005 reflected (0xA001), init 0 ----

def _make_crc_table():
    t = array("H", [0] * 256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c >> 1) ^ 0xA001) if c & 1 else (c >> 1)
        t[i] = c
    return t


_CRC_TABLE = _make_crc_table()


def crc16(data):
    t = _CRC_TABLE
    crc = 0
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def next_seq(seq):
    """The sequence number after `seq`: 9999 wraps to 0001 (5.5.1.5)."""
    if seq >= SEQ_LAST or seq < SEQ_FIRST:
        return SEQ_FIRST
    return seq + 1


# --- AES --------------------------------------------------------------------------

def _cipher(key):
    # A fresh object per message: cryptolib objects are one-direction,
    # one-shot, and CBC chains from the zero IV each time (5.4.6).
    if not isinstance(key, (bytes, bytearray)) or len(key) not in (16, 24, 32):
        raise Dc09UsageError("key must be 16, 24 or 32 bytes")
    try:
        return aes(bytes(key), _MODE_CBC, _ZERO_IV)
    except ValueError:
        # MicroPython ports built on axTLS (the unix port among them) have
        # AES-128 and AES-256 only; mbedTLS ports (ESP32, RP2) have all three.
        raise Dc09UsageError("no AES-%d in this port's cryptolib" % (8 * len(key)))


def key_size_supported(n):
    """True if this port's cryptolib does AES with an `n`-byte key.  The
    firmware checks its configured key with this at start-up."""
    try:
        _cipher(bytes(n))
        return True
    except Dc09UsageError:
        return False


# --- helpers ------------------------------------------------------------------

def _is_int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_hex(s, lo, hi):
    if not isinstance(s, str) or not lo <= len(s) <= hi:
        return False
    for c in s:
        if c not in _HEX:
            return False
    return True


def _field_value(b):
    # CRC and length fields: upper-case hex only (5.5.1.2/3).  int(x, 16)
    # alone would take signs, spaces, '_' and lower case, and a lower-case
    # letter would hide a flipped 0x20 bit in a field the CRC does not cover.
    v = 0
    for c in b:
        if 0x30 <= c <= 0x39:  # 0-9
            v = (v << 4) | (c - 0x30)
        elif 0x41 <= c <= 0x46:  # A-F
            v = (v << 4) | (c - 0x37)
        else:
            return -1
    return v


def _days_in_month(y, m):
    if m == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
        return 29
    return _DAYS[m - 1]


def _valid_time(t):
    if not isinstance(t, tuple) or len(t) != 6:
        return False
    y, mo, d, hh, mi, ss = t
    return (_is_int(y, 1, 9999) and _is_int(mo, 1, 12)
            and _is_int(d, 1, 31) and d <= _days_in_month(y, mo)
            and _is_int(hh, 0, 23) and _is_int(mi, 0, 59)
            and _is_int(ss, 0, 59))


def _format_time(t):
    # _HH:MM:SS,MM-DD-YYYY, UTC (5.5.1.8)
    return "_%02d:%02d:%02d,%02d-%02d-%04d" % (t[3], t[4], t[5], t[1], t[2], t[0])


def _parse_time(s):
    if len(s) != 19 or s[2] != ":" or s[5] != ":" or s[8] != "," \
            or s[11] != "-" or s[14] != "-":
        return None
    for i in (0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 17, 18):
        if s[i] not in _DIGITS:
            return None
    t = (int(s[15:19]), int(s[9:11]), int(s[12:14]),
         int(s[0:2]), int(s[3:5]), int(s[6:8]))
    return t if _valid_time(t) else None


def random_pad(n):
    """`n` pad bytes from os.urandom, printable ASCII except '|', '[' and
    ']' (5.4.4.2; printable so receivers that read the plaintext as text
    cope).  Rejection sampling keeps the allowed bytes equally likely."""
    out = bytearray()
    while len(out) < n:
        for b in urandom(2 * (n - len(out)) + 8):
            b &= 0x7F
            if 0x21 <= b <= 0x7E and b not in _PAD_FORBIDDEN:
                out.append(b)
                if len(out) == n:
                    break
    return bytes(out)


def _frame(body):
    return b"\n" + ("%04X0%03X" % (crc16(body), len(body))).encode() + body + b"\r"


def _build(token, seq, account, line, receiver, data, key, timestamp, pad, xdata=""):
    if not _is_int(seq, 0, SEQ_LAST):
        raise Dc09UsageError("seq")
    if not _is_hex(account, 3, 16):
        raise Dc09UsageError("account")
    if line is not None and not _is_hex(line, 1, 6):
        raise Dc09UsageError("line")
    if receiver is not None and not _is_hex(receiver, 1, 6):
        raise Dc09UsageError("receiver")
    if timestamp is not None and not _valid_time(timestamp):
        raise Dc09UsageError("timestamp")
    payload = data + "]" + xdata
    if timestamp is not None:
        payload += _format_time(timestamp)
    header = '"%s%s"%04d' % ("" if key is None else "*", token, seq)
    if receiver is not None:
        header += "R" + receiver
    if line is not None:
        header += "L" + line
    header += "#" + account + "["
    if key is None:
        if pad is not None:
            raise Dc09UsageError("pad without key")
        body = (header + payload).encode()
    else:
        cipher = _cipher(key)
        if timestamp is None:
            raise Dc09UsageError("encrypted message needs a timestamp")
        p = payload.encode()
        if pad is None:
            pad = random_pad(_BLOCK - (len(p) + 1) % _BLOCK)
        else:
            pad = bytes(pad)
            if not pad or (len(pad) + 1 + len(p)) % _BLOCK:
                raise Dc09UsageError("pad length")
            for b in pad:
                if b in _PAD_FORBIDDEN:
                    raise Dc09UsageError("pad byte")
        ct = cipher.encrypt(pad + b"|" + p)
        body = header.encode() + binascii.hexlify(ct).decode().upper().encode()
    if len(body) > MAX_BODY_LEN:
        raise Dc09UsageError("too long")
    return _frame(body)


# --- what the panel sends -----------------------------------------------------

def _udeg_text(v):
    """Integer micro-degrees -> signed decimal degrees, six places, with
    integers only (no float formatting on the board)."""
    sign = "-" if v < 0 else ""
    v = -v if v < 0 else v
    return "%s%d.%06d" % (sign, v // 1000000, v % 1000000)


def position_blocks(lat, lon):
    """The [X...][Y...] extended data blocks (DC-09 5.5.1.9: X longitude,
    Y latitude) for a position in integer micro-degrees, as signed decimal
    degrees ("[X-4.895200][Y52.370200]"); pass it as build_adm_cid's
    `xdata`.  The receiver reads it into the event's location (docs/dc09.md,
    "Extended data")."""
    if not (_is_int(lat, -90000000, 90000000) and _is_int(lon, -180000000, 180000000)):
        raise Dc09UsageError("position")
    return "[X" + _udeg_text(lon) + "][Y" + _udeg_text(lat) + "]"


def _xdata_ok(x):
    """Extended data as build_adm_cid takes it: "[L...]" blocks, printable
    ASCII, no bracket inside a block."""
    if not isinstance(x, str):
        return False
    depth = 0
    for c in x:
        if c < " " or c > "~":
            return False
        if c == "[":
            if depth:
                return False
            depth = 1
        elif c == "]":
            if not depth:
                return False
            depth = 0
        elif not depth:
            return False
    return depth == 0


def build_adm_cid(seq, account, line, receiver, qualifier, code, partition,
                  zone, key, timestamp, pad=None, xdata=""):
    """An ADM-CID frame: "ADM-CID" with data "#acct|QEEE GG ZZZ" (5.5.1.7,
    Contact ID).  `key` None sends in the clear; else 16/24/32 bytes and
    `timestamp` (y, m, d, H, M, S) UTC is required.  `pad` is for tests.
    `xdata`: extended data blocks after the data, e.g. position_blocks()."""
    if not _xdata_ok(xdata):
        raise Dc09UsageError("xdata")
    if qualifier not in (Q_NEW, Q_RESTORE, Q_STATUS) or isinstance(qualifier, bool):
        raise Dc09UsageError("qualifier")
    if not (_is_int(code, 0, 999) and _is_int(partition, 0, 99)
            and _is_int(zone, 0, 999)):
        raise Dc09UsageError("code/partition/zone")
    data = "#%s|%d%03d %02d %03d" % (account, qualifier, code, partition, zone)
    return _build("ADM-CID", seq, account, line, receiver, data, key,
                  timestamp, pad, xdata)


def build_null(seq, account, line, receiver, key, timestamp, pad=None):
    """A NULL link-test frame (5.5.2.1): empty data; encrypted ("*NULL") when
    `key` is given, which needs a timestamp and gets a pad."""
    return _build("NULL", seq, account, line, receiver, "", key, timestamp, pad)


# --- what the receiver answers ---------------------------------------------------

def _strip_pad(plain):
    # Replies carry no data, so a missing '|' after the pad (some receivers
    # send "000...0]_HH:MM:SS,..." for *ACK) cannot be confused with data:
    # accept the pad as ending at the first ']' then.
    bar = plain.find(b"|")
    close = plain.find(b"]")
    if bar >= 0 and (close < 0 or bar < close):
        if plain[:bar].find(b"[") >= 0:
            return None
        return plain[bar + 1:]
    if close >= 0 and plain[:close].find(b"[") < 0:
        return plain[close:]
    return None


def _payload_time(s):
    # s follows the opening '[': data ']' {'[' X... ']'} ['_' timestamp]
    close = s.find("]")
    if close < 0 or s[:close].find("[") >= 0:
        raise Dc09ReplyError("data block")
    pos = close + 1
    while pos < len(s) and s[pos] == "[":
        close = s.find("]", pos)
        if close < 0 or close == pos + 1 or not "A" <= s[pos + 1] <= "Z" \
                or s[pos + 1:close].find("[") >= 0:
            raise Dc09ReplyError("extended data block")
        pos = close + 1
    rest = s[pos:]
    if not rest:
        return None
    if rest[0] != "_":
        raise Dc09ReplyError("trailing text")
    t = _parse_time(rest[1:])
    if t is None:
        raise Dc09ReplyError("timestamp")
    return t


def _printable(b):
    for c in b:
        if c < 0x20 or c > 0x7E:
            return False
    return True


def parse_reply(frame, key):
    """Parse a receiver's reply frame (LF ... CR).  `key` is the account key
    the message was sent with, or None if it went in the clear.

    Returns (kind, seq, timestamp) with kind 'ACK', 'NAK' or 'DUH', seq an
    int and timestamp a (y, m, d, H, M, S) tuple or None.  The reply to an
    encrypted message must be "*ACK" with a timestamp (5.5.3.1); NAK and DUH
    come in the clear (5.5.3.2, 5.5.3.3).  The caller matches seq against
    what it sent and, for NAK, may set its clock from the timestamp.

    Raises Dc09ReplyError for anything wrong with the frame, and
    Dc09UsageError if `key` is needed and unusable (see key_size_supported).
    """
    try:
        frame = bytes(frame)
    except Exception:
        raise Dc09ReplyError("not bytes")
    n = len(frame)
    if n > MAX_REPLY_LEN:
        raise Dc09ReplyError("too long")
    if n < 10 or frame[0] != 0x0A or frame[n - 1] != 0x0D:
        raise Dc09ReplyError("not a LF...CR frame")
    body = frame[9:n - 1]
    crc = _field_value(frame[1:5])
    if frame[5] != 0x30 or _field_value(frame[5:9]) != len(body):
        raise Dc09ReplyError("length")
    if crc < 0 or crc16(body) != crc:
        raise Dc09ReplyError("crc")
    if not _printable(body):
        raise Dc09ReplyError("non-printable")
    s = body.decode()
    q = s.find('"', 1)
    if s[:1] != '"' or q < 0:
        raise Dc09ReplyError("ID token")
    token = s[1:q]
    encrypted = token[:1] == "*"
    if encrypted:
        token = token[1:]
    if token not in ("ACK", "NAK", "DUH"):
        raise Dc09ReplyError("not a reply")
    seq_s = s[q + 1:q + 5]
    if len(seq_s) != 4:
        raise Dc09ReplyError("seq")
    for c in seq_s:
        if c not in _DIGITS:
            raise Dc09ReplyError("seq")
    bracket = s.find("[", q + 5)
    if bracket < 0:
        raise Dc09ReplyError("no data block")
    for c in s[q + 5:bracket]:
        if c not in _REPLY_HEADER_CHARS:
            raise Dc09ReplyError("header")
    rest = s[bracket + 1:]
    if encrypted:
        if key is None:
            raise Dc09ReplyError("encrypted reply to a clear message")
        cipher = _cipher(key)
        if not rest or len(rest) % (2 * _BLOCK):
            raise Dc09ReplyError("cipher length")
        for c in rest:
            if c not in _HEX:
                raise Dc09ReplyError("cipher hex")
        plain = cipher.decrypt(binascii.unhexlify(rest))
        region = _strip_pad(plain)
        if region is None or not _printable(region):
            raise Dc09ReplyError("does not decrypt (wrong key?)")
        rest = region.decode()
    elif key is not None and token == "ACK":
        # 5.5.3.1: the ACK to an encrypted message is encrypted.  A clear
        # one could come from anybody on the path.
        raise Dc09ReplyError("clear ACK to an encrypted message")
    t = _payload_time(rest)
    if encrypted and t is None:
        raise Dc09ReplyError("encrypted reply without timestamp")
    return (token, int(seq_s), t)
