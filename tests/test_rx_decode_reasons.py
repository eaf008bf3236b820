"""`guardline-receiver decode`: the JSON's reason and the line on stderr
tell the same story for every way a capture can be wrong, with
protocol/spec.py (construct) and with the lean fallback used where
construct is absent.  A reason names what is wrong, never a check that did
not run (bytes with no header are not "bad_crc")."""

from __future__ import annotations

import json
import sys

import pytest

import protocol
from protocol.lean import glwire as w
from receiver.cli import main

KEY = bytes(range(32))
FRAME = w.seal(w.Keys(KEY), {"type": w.MSG_EVENT, "qualifier": 1, "code": 130, "partition": 1,
                             "zone": 3, "event_time": 1_700_000_000, "text": None,
                             "value": None}, 1001, 7, 1_700_000_000)


def _flip(data: bytes, i: int) -> bytes:
    b = bytearray(data)
    b[i] ^= 0x01
    return bytes(b)


def _body_len(data: bytes, n: int) -> bytes:
    """FRAME with body length `n` and a header CRC that holds."""
    b = bytearray(data)
    b[17:19] = n.to_bytes(2, "big")
    b[19:21] = w.crc16(b, 0, 19).to_bytes(2, "big")
    return bytes(b)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A store without account 1001: decode finds no key there (header only)."""
    db = str(tmp_path_factory.mktemp("decode") / "rx.db")
    assert main(["accounts", "add", "43", "--db", db]) == 0
    return db


# a standard DC-09 frame, as a log prints it (without LF and CR): dc09.build of
# SIA-DCS seq 12, line 1, account 1234, "Nri1/BA01"
DC09 = '70340025"SIA-DCS"0012L1#1234[#1234|Nri1/BA01]'

# id: (argument, key, the JSON's reason_name (None: valid), words the reason's detail says,
#      what the stderr line calls it)
NATIVE = {
    "empty": ("", None, "no_header", "0 bytes, no frame header", "not a Guardline or DC-09 frame"),
    "garbage": ("deadbeef" * 20, None, "no_header", "80 bytes, no frame header",
                "not a Guardline or DC-09 frame"),
    "header_cut_short": ("474c0101", None, "cut_short", "4 bytes, cut short: a header is 21",
                         "not a valid frame"),
    "header_crc": (_flip(FRAME, 5).hex(), None, "bad_crc", "header CRC does not match",
                   "not a valid frame"),
    "body_length": (_body_len(FRAME, 33).hex(), None, "malformed", "impossible body length 33",
                    "not a valid frame"),
    "truncated_frame": (FRAME[:-1].hex(), None, "malformed", "length 72",  # spec: frame, lean: datagram
                        "not a valid frame"),
    "extra_byte": ((FRAME + b"\x00").hex(), None, "malformed", "length does not match header",
                   "not a valid frame"),
    "frame_crc": (_flip(FRAME, len(FRAME) - 1).hex(), None, "bad_crc", "bad frame CRC",
                  "not a valid frame"),
    "bad_mac": (FRAME.hex(), bytes(32), "bad_mac", "bad MAC", "not a valid frame"),
    "good_no_key": (FRAME.hex(), None, None, None, None),
    "good_with_key": (FRAME.hex(), KEY, None, None, None),
}


@pytest.mark.parametrize("with_spec", [True, False], ids=["spec", "lean"])
@pytest.mark.parametrize("case", list(NATIVE), ids=list(NATIVE))
def test_native_reason_names_what_the_text_says(case, with_spec, capsys, monkeypatch, store):
    if not with_spec:  # the glwire fallback used when protocol/spec.py is absent
        # (both: `from protocol import spec` takes the package's attribute first)
        monkeypatch.setitem(sys.modules, "protocol.spec", None)
        monkeypatch.delattr(protocol, "spec", raising=False)
    arg, key, name, words, what = NATIVE[case]
    capsys.readouterr()
    argv = ["decode", arg, "--db", store]
    if key is not None:
        argv += ["--key", key.hex()]
    rc = main(argv)
    out, err = capsys.readouterr()
    d = json.loads(out)
    if name is None:
        assert rc == 0 and d["valid"] is True and "error" not in d and err == ""
        assert d["account"] == 1001 and d["seq"] == 7
        assert d["authenticated"] is (True if key else None)
        return
    assert rc == 1 and d["valid"] is False and d["length"] == len(bytes.fromhex(arg))
    e = d["error"]
    if case == "truncated_frame":  # each codec words its own length check
        assert ("bad frame length" if with_spec else "bad datagram length") in e["detail"]
    assert e["reason_name"] == name and words in e["detail"], e
    # a NAK code only where a receiver has a header to address a NAK to
    assert e["reason"] == (None if name in ("no_header", "cut_short") else
                           {v: k for k, v in w.NAK_NAMES.items()}[name])
    # the text line is the JSON's reason, in the same words
    assert err == "guardline-receiver: %s: %s\n" % (what, e["detail"])


@pytest.mark.parametrize("arg, reason, words", [
    (DC09, None, None),
    (DC09.replace("7034", "7035"), "bad_crc", "CRC"),
    (DC09.replace("BA01", "BA02"), "bad_crc", "CRC"),  # content changed, CRC kept
    (DC09[:-10], "bad_format", "length field 0025 but 27 bytes follow"),  # cut short
    ('F19A002B"ADM-CID"0056L9999#9999[#9999|1900 00 001]', None, None),  # CRC over CR
])
def test_dc09_reason_names_what_the_text_says(arg, reason, words, capsys, tmp_path):
    rc = main(["decode", arg, "--db", str(tmp_path / "none.db")])
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert d["protocol"] == "dc09"
    if reason is None:
        assert rc == 0 and d["valid"] and d["message"]["account"] in ("1234", "9999")
        assert err == ""
        return
    assert rc == 1 and not d["valid"] and d["reason"] == reason and words in d["error"], d
    assert err == "guardline-receiver: not a valid DC-09 frame: %s\n" % d["error"]
