"""A DC-09 panel from the central station's template: the receiver's own
CLI (``guardline-receiver accounts add --protocol dc09 --panel-template``,
run as a subprocess on a temporary store) writes the template;
``guardline-panel new --from-template`` turns it into a ``"protocol":
"dc09"`` config; ``check`` (the firmware's validator) passes it; the key
the panel gets is the key the receiver stored, and neither tool printed it.
"""

import json
import os
import stat
import subprocess
import sys

import pytest

from firmware import cli
from firmware.device import config as C


def receiver_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "receiver.cli", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("number, key_args, key_bytes", [
    ("12ab", ["--key", "0123456789ABCDEF", "--key-format", "ascii"], b"0123456789ABCDEF"),
    ("00C0FFEE", ["--key", "a1" * 32], bytes.fromhex("a1" * 32)),
    ("0C1E", [], b""),  # no key: the line reports in clear
])
def test_dc09_template_to_checked_config(tmp_path, capsys, number, key_args, key_bytes):
    db = str(tmp_path / "receiver.db")
    tmpl = str(tmp_path / "panel.json")
    r = receiver_cli("--db", db, "accounts", "add", number, "--protocol", "dc09", *key_args,
                     "--kind", "door", "--site", "Pharmacy, Quay St",
                     "--zones", json.dumps({"1": "front door", "2": "stock room PIR"}),
                     "--partitions", json.dumps({"1": "shop"}), "--heartbeat", "300",
                     "--panel-template", tmpl, "--receiver", "tcp/127.0.0.1:7710",
                     "--receiver", "udp/127.0.0.1:7711")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(tmpl).st_mode) == 0o600

    site = str(tmp_path / "site.json")
    assert cli.main(["new", "--kind", "door", "--from-template", tmpl, "-o", site]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(os.stat(site).st_mode) == 0o600
    if key_bytes:  # never printed, in either spelling
        assert key_bytes.hex() not in out.lower() and key_bytes.decode("latin-1") not in out
        assert "hidden" in out
    else:
        assert "reports in clear" in out

    doc = json.load(open(site))
    assert doc["protocol"] == "dc09" and "key" not in doc and "account" not in doc
    cfg, errors = C.validate(doc)
    assert errors == []
    assert cfg["dc09"]["account"] == number.upper()
    assert cfg["receiver"]["primary"] == {"type": "tcp", "host": "127.0.0.1", "port": 7710}
    assert cfg["receiver"]["backup"] == {"type": "udp", "host": "127.0.0.1", "port": 7711}
    assert cfg["timings"]["heartbeat_s"] == 300
    assert [z["name"] for z in cfg["zones"]] == ["front door", "stock room PIR"]

    # the panel's key is the receiver's, byte for byte
    # (accounts show takes the number as stored, upper case)
    shown = receiver_cli("--db", db, "accounts", "show", number.upper(), "--show-key")
    assert shown.returncode == 0, shown.stderr
    if key_bytes:
        assert cfg["dc09"]["key_format"] == "hex"
        assert bytes.fromhex(cfg["dc09"]["key"]) == key_bytes
        assert key_bytes.hex() in shown.stdout.lower()
    else:
        assert cfg["dc09"]["key"] is None

    capsys.readouterr()
    assert cli.main(["check", site]) == 0
    res = capsys.readouterr()
    assert "ok (door panel, DC-09 account %s" % number.upper() in res.out
    if key_bytes:
        assert key_bytes.hex() not in (res.out + res.err).lower()
