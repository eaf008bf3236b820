"""Golden vectors for the v1 wire protocol, and the message generators the
property tests share.

Each vector is one complete frame, written out as bytes.fromhex(...), with
everything that went into it fixed: master key, IV, account, sequence,
timestamp, flags and the message.  The frames were produced by
protocol/spec.py and cross-checked against protocol/lean/glwire.py and
against a third, by-hand construction from primitives
(tests/test_spec.py::test_vectors_from_primitives).  They are data, not
computed at test time: if either codec changes a byte, a test fails.

The vectors cover every message type, both directions (FLAG_FROM_RECEIVER),
the other flags, the extremes of the field ranges, an EVENT with a 32-byte
text (the largest v1 payload), a payload of exactly one block (REPLY with 8
partitions: PKCS#7 adds a whole block), and a 16-byte master key; and the
v1.1 position record: an EVENT carrying one, the largest payload (32-byte
text, value and a position at the field extremes, 69 bytes) and a
POSITION track point.

The generators (hypothesis strategies and a seeded `random.Random` variant
for batches sent to the MicroPython VM) are written from the field table
below, independently of both codecs.
"""

import random

from hypothesis import strategies as st

KEY = bytes(range(32))
KEY16 = bytes.fromhex("00112233445566778899aabbccddeeff")
WRONG_KEY = bytes(range(1, 33))
IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
ACCOUNT = 0x00012345

FLAG_FROM_RECEIVER = 0x01
FLAG_BACKUP_PATH = 0x02
FLAG_CLOCK_UNSET = 0x04

HELLO, EVENT, HEARTBEAT, POSITION, ACK, NAK, TIME, COMMAND, REPLY = (
    0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x20, 0x21)
TYPES = (HELLO, EVENT, HEARTBEAT, POSITION, ACK, NAK, TIME, COMMAND, REPLY)


class Vector:
    def __init__(self, name, key, flags, seq, timestamp, msg, payload, frame):
        self.name = name
        self.key = key
        self.account = ACCOUNT
        self.iv = IV
        self.flags = flags
        self.seq = seq
        self.timestamp = timestamp
        self.msg = msg
        self.payload = payload
        self.frame = frame

    def __repr__(self):
        return "Vector(%s)" % self.name


VECTORS = [
    Vector(
        'hello', KEY, flags=0, seq=1, timestamp=1800000000,
        msg={'type': 1,
             'fw_major': 1,
             'fw_minor': 4,
             'fw_patch': 2,
             'panel_kind': 1,
             'capabilities': 3,
             'zones': 16,
             'partition_count': 2,
             'heartbeat_s': 300},
        payload=bytes.fromhex('01040201000310020000012c'),
        frame=bytes.fromhex(
            '474c010000012345000000016b49d20001002015d5a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf44e45a5dcd58ec3ad63986ff2226942a555194a16a9165bbfd44da'
            'df7d817e97b6101ef0'
        ),
    ),
    Vector(
        'event_plain', KEY, flags=0, seq=2, timestamp=1800000000,
        msg={'type': 2,
             'qualifier': 1,
             'code': 130,
             'partition': 1,
             'zone': 5,
             'event_time': 1799999998,
             'text': None,
             'value': None},
        payload=bytes.fromhex('0100820100056b49d1fe00'),
        frame=bytes.fromhex(
            '474c010000012345000000026b49d20002002084f0a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf3202f8212491ee8d3484a0670ede2a92a29e4c9c44c6a9de9f541b'
            '03d35d19fd9a4cf7c3'
        ),
    ),
    Vector(
        'event_text_value', KEY, flags=FLAG_BACKUP_PATH, seq=3, timestamp=1800000000,
        msg={'type': 2,
             'qualifier': 3,
             'code': 301,
             'partition': 2,
             'zone': 0,
             'event_time': 1799999999,
             'text': 'Küche Fenster',
             'value': -40},
        payload=bytes.fromhex('03012d0200006b49d1ff030e4bc3bc6368652046656e73746572ffffffd8'),
        frame=bytes.fromhex(
            '474c010200012345000000036b49d200020030917ba0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeafb3a3cd30edb0e9264d3d7c885c4fe18e600e2e4af06ae6b78cc491'
            '9ea3dc37b0a55dcc88043b6856f74589f7012632e23afe65e0'
        ),
    ),
    Vector(
        'event_text_max', KEY, flags=0, seq=4, timestamp=1800000000,
        msg={'type': 2,
             'qualifier': 6,
             'code': 999,
             'partition': 255,
             'zone': 65535,
             'event_time': 4294967295,
             'text': '0123456789abcdefghijklmnopqrstuv',
             'value': None},
        payload=bytes.fromhex('0603e7ffffffffffffff0120'
                              '303132333435363738396162636465666768696a6b6c6d6e6f70717273747576'),
        frame=bytes.fromhex(
            '474c010000012345000000046b49d200020040689da0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf2c43b5f2f446e1a68210c6a0277e97eb17c644d82b71c54334fb55'
            '3207e2f7af2607d383d7352b368250af2e0c5333ec653479f14a2c9ad4c6b072'
            'a9a86f08b645cb82c1'
        ),
    ),
    Vector(
        'event_value_only', KEY16, flags=0, seq=4294967295, timestamp=4294967295,
        msg={'type': 2,
             'qualifier': 1,
             'code': 0,
             'partition': 0,
             'zone': 0,
             'event_time': 0,
             'text': None,
             'value': 2147483647},
        payload=bytes.fromhex('01000000000000000000027fffffff'),
        frame=bytes.fromhex(
            '474c010000012345ffffffffffffffff0200208e4fa0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf847b0e37e4fbdf0f3250c0e8531cec685174a7fcb127ca2ac055e2'
            'e5b4a0097db897d25a'
        ),
    ),
    Vector(
        'heartbeat', KEY, flags=0, seq=5, timestamp=1800000000,
        msg={'type': 3,
             'troubles': 3,
             'battery_mv': 13650,
             'active_path': 1,
             'queue_depth': 0,
             'partitions': [2, 0]},
        payload=bytes.fromhex('00033552010000020200'),
        frame=bytes.fromhex(
            '474c010000012345000000056b49d20003002074d8a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeafc8474da7efe307a5301ff9ebe32575e0a45982dce2aa824052783f'
            'cb7c01def9d0e6f5c0'
        ),
    ),
    Vector(
        'heartbeat_clock_unset', KEY, flags=FLAG_CLOCK_UNSET | FLAG_BACKUP_PATH, seq=6, timestamp=0,
        msg={'type': 3,
             'troubles': 32,
             'battery_mv': 0,
             'active_path': 2,
             'queue_depth': 7,
             'partitions': []},
        payload=bytes.fromhex('0020000002000700'),
        frame=bytes.fromhex(
            '474c0106000123450000000600000000030020d5b0a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeafada7a69b5f225cacbfcaae8b8f6429822e8447419de0996141d4e2'
            '32f58b066154104c72'
        ),
    ),
    Vector(
        'ack', KEY, flags=FLAG_FROM_RECEIVER, seq=100, timestamp=1800000001,
        msg={'type': 16, 'ack_seq': 2},
        payload=bytes.fromhex('00000002'),
        frame=bytes.fromhex(
            '474c010100012345000000646b49d2011000207a10a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf48f98a6944e23b554dd0f77005b5e30a476d41fe65921476114d0a'
            'da9a8d57fd67ee4d58'
        ),
    ),
    Vector(
        'nak_replay', KEY, flags=FLAG_FROM_RECEIVER, seq=101, timestamp=1800000001,
        msg={'type': 17,
             'nak_seq': 1,
             'reason': 3,
             'receiver_time': 1800000001,
             'next_seq': 6},
        payload=bytes.fromhex('00000001036b49d20100000006'),
        frame=bytes.fromhex(
            '474c010100012345000000656b49d2011100200af3a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf3d1e9fdc7d31c813de70a0bb4f8b56b52843f51d6d12da941dab3a'
            'fdc9d127ba1b3e4c4e'
        ),
    ),
    Vector(
        'time', KEY, flags=FLAG_FROM_RECEIVER, seq=102, timestamp=1800000002,
        msg={'type': 18,
             'ref_seq': 6,
             'receiver_time': 1800000002,
             'utc_offset_min': -300},
        payload=bytes.fromhex('000000066b49d202fed4'),
        frame=bytes.fromhex(
            '474c010100012345000000666b49d202120020000aa0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf30a6df81457371d63d1a65fed8ac9b55a14e5686f573ffc45ae894'
            '99de45c9f2d09cecaa'
        ),
    ),
    Vector(
        'command', KEY, flags=FLAG_FROM_RECEIVER, seq=103, timestamp=1800000003,
        msg={'type': 32, 'command': 2, 'partition': 1, 'arg': 0, 'user': 17},
        payload=bytes.fromhex('020100000011'),
        frame=bytes.fromhex(
            '474c010100012345000000676b49d2032000209aa8a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf9e227f8706bf9afec18f2902a07a24b2d12869f071d65ca25c5f86'
            '41e3019b0e2d85b86a'
        ),
    ),
    Vector(
        'reply', KEY, flags=0, seq=7, timestamp=1800000004,
        msg={'type': 33,
             'command_seq': 103,
             'result': 0,
             'troubles': 0,
             'partitions': [2, 0, 0, 0, 3, 1, 4, 5]},
        payload=bytes.fromhex('00000067000000080200000003010405'),
        frame=bytes.fromhex(
            '474c010000012345000000076b49d204210030cb18a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeafff1a830bd0e54c2b48273d08d80dd178b74583a9deb2cfd5ec33e7'
            '7b84dee33f5d0c20bfd6b0d66c16826a312f9f5d549019b9c2'
        ),
    ),
    Vector(
        'event_position', KEY, flags=0, seq=8, timestamp=1800000000,
        msg={'type': 2,
             'qualifier': 1,
             'code': 133,
             'partition': 1,
             'zone': 5,
             'event_time': 1799999991,
             'text': 'cash compartment',
             'value': None,
             'position': {'lat': 52370200, 'lon': -4895200, 'speed': 415, 'course': 844,
                          'quality': 1, 'sats': 8, 'hdop': 9, 'fix_time': 1799999990,
                          'flags': 0x0B}},
        payload=bytes.fromhex('0100850100056b49d1f705106361736820636f6d706172746d656e7401031f1b'
                              '18ffb54e20019f034c0108096b49d1f60b'),
        frame=bytes.fromhex(
            '474c010000012345000000086b49d2000200506b1ba0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf9f7358826c01b8f20b86ea61de08373ba6d67c027a5b1a72ee3b78'
            '45886227f6d7d2833b595fad5f47a0702742678d3db3159ac5d80e0ce0ce213d'
            '752b5dbcab4ee1f3269aa931a684d9b3bdb1bfa980f097ba8d'
        ),
    ),
    Vector(
        'event_position_max', KEY, flags=FLAG_BACKUP_PATH, seq=9, timestamp=1800000000,
        msg={'type': 2,
             'qualifier': 6,
             'code': 999,
             'partition': 255,
             'zone': 65535,
             'event_time': 4294967295,
             'text': '0123456789abcdefghijklmnopqrstuv',
             'value': -2147483648,
             'position': {'lat': -90000000, 'lon': 180000000, 'speed': 65535, 'course': 3599,
                          'quality': 8, 'sats': 255, 'hdop': 255, 'fix_time': 4294967295,
                          'flags': 0x0F}},
        payload=bytes.fromhex('0603e7ffffffffffffff0720303132333435363738396162636465666768696a'
                              '6b6c6d6e6f707172737475768000000001faa2b5800aba9500ffff0e0f08ffff'
                              'ffffffff0f'),
        frame=bytes.fromhex(
            '474c010200012345000000096b49d2000200605af2a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeaf752e93089eee2b6e668dc6c7d0b7b4ddb0fa5ff21603a4cf3f34d8'
            '6c408230f815aaa936594dcbe9ee3eaa6312980f4683258c5ebecac26a82ad4f'
            'ef9d1de787238132dace1d5806d1036748c28884e902193ab7b394852b5fb8b6'
            'bdde2adaaf59edfcef'
        ),
    ),
    Vector(
        'position', KEY, flags=0, seq=10, timestamp=1800000002,
        msg={'type': 4,
             'reason': 8,
             'position': {'lat': -33868800, 'lon': 151209300, 'speed': 0, 'course': 0,
                          'quality': 2, 'sats': 12, 'hdop': 7, 'fix_time': 1800000000,
                          'flags': 0x01}},
        payload=bytes.fromhex('0801fdfb34000903455400000000020c076b49d20001'),
        frame=bytes.fromhex(
            '474c0100000123450000000a6b49d202040030d7d3a0a1a2a3a4a5a6a7a8a9aa'
            'abacadaeafefaf9e6f3e03c455e21f4e776a94ccfa6dac2c9fd5e84e6aad94d3'
            '4affda5ac59f116ce434f8307912fc7e570eef3553dc58d0b7'
        ),
    ),
]

VECTOR_IDS = [v.name for v in VECTORS]
BY_NAME = {v.name: v for v in VECTORS}


# --- generators ----------------------------------------------------------------

U8 = (0, 0xFF)
U16 = (0, 0xFFFF)
U32 = (0, 0xFFFFFFFF)
I32 = (-0x80000000, 0x7FFFFFFF)

# Every field of every message: an inclusive range, or a tuple of allowed
# values (marked with "one_of").  EVENT's text/value and the partition
# lists are handled apart.
FIELDS = {
    HELLO: {"fw_major": U8, "fw_minor": U8, "fw_patch": U8, "panel_kind": U8,
            "capabilities": U16, "zones": U8, "partition_count": U8, "heartbeat_s": U32},
    EVENT: {"qualifier": ("one_of", (1, 3, 6)), "code": (0, 999), "partition": U8,
            "zone": U16, "event_time": U32},
    HEARTBEAT: {"troubles": U16, "battery_mv": U16, "active_path": U8, "queue_depth": U16},
    ACK: {"ack_seq": U32},
    NAK: {"nak_seq": U32, "reason": (1, 8), "receiver_time": U32, "next_seq": U32},
    TIME: {"ref_seq": U32, "receiver_time": U32, "utc_offset_min": (-720, 840)},
    COMMAND: {"command": (1, 6), "partition": U8, "arg": U16, "user": U16},
    REPLY: {"command_seq": U32, "result": (0, 3), "troubles": U16},
    POSITION: {"reason": (0, 8)},
}
# The v1.1 position record (EVENT's optional "position", POSITION's
# "position"); "flags" allows bits 0..3 only.
POSITION_FIELDS = {"lat": (-90_000_000, 90_000_000), "lon": (-180_000_000, 180_000_000),
                   "speed": U16, "course": (0, 3599), "quality": (0, 8), "sats": U8,
                   "hdop": U8, "fix_time": U32, "flags": (0, 15)}
HAS_PARTITIONS = (HEARTBEAT, REPLY)
MAX_TEXT_BYTES = 32
MAX_PARTITIONS = 8


def _field(spec):
    if spec[0] == "one_of":
        return st.sampled_from(spec[1])
    return st.integers(spec[0], spec[1])


def _short_text(s):
    return len(s.encode("utf-8")) <= MAX_TEXT_BYTES


texts = st.text(max_size=MAX_TEXT_BYTES).filter(_short_text)


def messages(types=TYPES):
    """Strategy: a valid message dict of one of `types` (ints or a list)."""
    if isinstance(types, int):
        types = (types,)
    return st.one_of([_message_of(t) for t in types])


positions = st.fixed_dictionaries({k: _field(v) for k, v in POSITION_FIELDS.items()})


def _message_of(t):
    fields = {k: _field(v) for k, v in FIELDS[t].items()}
    fields["type"] = st.just(t)
    optional = {}
    if t == EVENT:
        fields["text"] = st.none() | texts
        fields["value"] = st.none() | st.integers(*I32)
        optional["position"] = positions  # the key only when there is one
    if t == POSITION:
        fields["position"] = positions
    if t in HAS_PARTITIONS:
        fields["partitions"] = st.lists(st.integers(*U8), max_size=MAX_PARTITIONS)
    return st.fixed_dictionaries(fields, optional=optional)


headers = st.fixed_dictionaries({
    "account": st.integers(*U32),
    "seq": st.integers(*U32),
    "timestamp": st.integers(*U32),
    "flags": st.integers(0, 7),
    "iv": st.binary(min_size=16, max_size=16),
})

keys = st.binary(min_size=16, max_size=64)


# Seeded generation for batches (one VM run handles hundreds of cases).
_TEXT_PIECES = ["a", "Z", "0", " ", "é", "ü", "€", "中", "😀", "Tür", "zone"]


def _rand_field(rng, spec):
    if spec[0] == "one_of":
        return rng.choice(spec[1])
    lo, hi = spec
    r = rng.random()
    if r < 0.15:
        return lo
    if r < 0.3:
        return hi
    return rng.randint(lo, hi)


def random_text(rng):
    s = ""
    while rng.random() < 0.85:
        piece = rng.choice(_TEXT_PIECES)
        if len((s + piece).encode("utf-8")) > MAX_TEXT_BYTES:
            break
        s += piece
    return s


def random_message(rng, t=None):
    """A valid message dict drawn from `rng` (a random.Random)."""
    if t is None:
        t = rng.choice(TYPES)
    m = {"type": t}
    for k, spec in FIELDS[t].items():
        m[k] = _rand_field(rng, spec)
    if t == EVENT:
        m["text"] = random_text(rng) if rng.random() < 0.5 else None
        m["value"] = _rand_field(rng, I32) if rng.random() < 0.5 else None
        if rng.random() < 0.3:
            m["position"] = random_position(rng)
    if t == POSITION:
        m["position"] = random_position(rng)
    if t in HAS_PARTITIONS:
        m["partitions"] = [rng.randint(0, 255) for _ in range(rng.randint(0, MAX_PARTITIONS))]
    return m


def random_position(rng):
    return {k: _rand_field(rng, spec) for k, spec in POSITION_FIELDS.items()}


def random_header(rng):
    return {
        "account": _rand_field(rng, U32),
        "seq": _rand_field(rng, U32),
        "timestamp": _rand_field(rng, U32),
        "flags": rng.randint(0, 7),
        "iv": bytes(rng.getrandbits(8) for _ in range(16)),
    }


def rng(seed):
    return random.Random(seed)


# --- a third construction, from primitives only --------------------------------
#
# Neither codec is used here: struct, binascii.crc_hqx (CRC-16/CCITT-FALSE
# when started at 0xFFFF), zlib.crc32, hmac and `cryptography`.  The golden
# vectors are rebuilt with it, and the fuzz tests use it to make frames that
# are well-formed up to a chosen point (good CRCs, good or bad MAC, any
# plaintext, any padding) so that the checks behind the CRCs get exercised.

import binascii as _binascii
import hashlib as _hashlib
import hmac as _hmac
import struct as _struct
import zlib as _zlib

from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
from cryptography.hazmat.primitives.ciphers import algorithms as _algorithms
from cryptography.hazmat.primitives.ciphers import modes as _modes


def derive(master):
    """-> (enc_key, mac_key) as in docs/protocol.md, "Keys"."""
    return (_hmac.new(master, b"guardline v1 enc", _hashlib.sha256).digest(),
            _hmac.new(master, b"guardline v1 mac", _hashlib.sha256).digest())


def pkcs7(payload):
    pad = 16 - len(payload) % 16
    return payload + bytes([pad]) * pad


def header_bytes(msg_type, body_len, account=ACCOUNT, seq=1, timestamp=0, flags=0,
                 version=1, sync=b"GL"):
    h = sync + _struct.pack(">BBIIIBH", version, flags, account, seq, timestamp,
                            msg_type, body_len)
    return h + _struct.pack(">H", _binascii.crc_hqx(h, 0xFFFF))


def fix_crcs(frame):
    """Recompute both CRCs of a frame-shaped byte string (what an attacker
    who changes bytes does: the CRCs carry no key)."""
    f = bytearray(frame)
    f[19:21] = _struct.pack(">H", _binascii.crc_hqx(bytes(f[:19]), 0xFFFF))
    f[-4:] = _struct.pack(">I", _zlib.crc32(bytes(f[:-4])))
    return bytes(f)


def seal_raw(master, msg_type, plaintext, account=ACCOUNT, seq=1, timestamp=0, flags=0,
             iv=IV, version=1, mac_key=None):
    """A frame around `plaintext`, which must already be padded to a whole
    number of blocks (so bad padding can be sealed too).  The MAC is made
    with `mac_key` if given, else with the key derived from `master`."""
    enc, mac = derive(master)
    if mac_key is not None:
        mac = mac_key
    e = _Cipher(_algorithms.AES(enc), _modes.CBC(iv)).encryptor()
    ct = e.update(plaintext) + e.finalize()
    signed = header_bytes(msg_type, 16 + len(ct), account, seq, timestamp, flags,
                          version) + iv + ct
    signed += _hmac.new(mac, signed, _hashlib.sha256).digest()[:16]
    return signed + _struct.pack(">I", _zlib.crc32(signed))


def frame_from_primitives(v):
    """Rebuild vector `v` from its inputs without either codec."""
    return seal_raw(v.key, v.msg["type"], pkcs7(v.payload), v.account, v.seq,
                    v.timestamp, v.flags, v.iv)
