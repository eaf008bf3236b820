"""``guardline-panel``: the panel firmware's host tool.

    guardline-panel sim CONFIG.json [--control HOST:PORT] [--state-dir DIR]
    guardline-panel check CONFIG.json
    guardline-panel hash-code --salt HEX CODE
    guardline-panel ctl [--control HOST:PORT] '{"cmd": "state"}'
    guardline-panel build [--out DIR] [--board sim|esp32|rp2]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

from firmware import build as _build
from firmware import sim as _sim
from firmware.device import config as _config


def check(path: str) -> int:
    cfg, errors, _ = _config.load(path)
    if errors:
        for e in errors:
            print("%s: %s" % (path, e), file=sys.stderr)
        print("%s: %d error(s)" % (path, len(errors)), file=sys.stderr)
        return 1
    print("%s: ok (%s panel, account %d, %d zones, %d partitions, %d users)" % (
        path, cfg["kind"], cfg["account"], len(cfg["zones"]), len(cfg["partitions"]),
        len(cfg["users"])))
    return 0


def hash_code(salt_hex: str, code: str) -> str:
    """The config's code_hash for `code` (sha256(salt || code), as the
    panel's users.hash_code computes it)."""
    import hashlib
    return hashlib.sha256(bytes.fromhex(salt_hex) + code.encode()).hexdigest()


def ctl(control: str, request: str, timeout: float = 10.0) -> dict:
    host, port = control.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request.strip().encode() + b"\n")
        f = s.makefile("rb")
        return json.loads(f.readline())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="guardline-panel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    _sim.add_arguments(sub.add_parser("sim", help="run the panel under the MicroPython VM"))
    p = sub.add_parser("check", help="validate a panel config")
    p.add_argument("config")
    p = sub.add_parser("hash-code", help="code_hash for a user code")
    p.add_argument("--salt", required=True, help="the config's code_salt (hex)")
    p.add_argument("code")
    p = sub.add_parser("ctl", help="send one control-socket command to a simulated panel")
    p.add_argument("--control", default=_sim.DEFAULT_CONTROL)
    p.add_argument("request", help='JSON, e.g. \'{"cmd": "state"}\'')
    p = sub.add_parser("build", help="build the .mpy bundle")
    p.add_argument("--out", default="build/firmware")
    p.add_argument("--board", choices=sorted(_build.BOARD_ONLY), default="sim")
    p.add_argument("--source", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "sim":
        return _sim.run_args(a)
    if a.cmd == "check":
        return check(a.config)
    if a.cmd == "hash-code":
        print(hash_code(a.salt, a.code))
        return 0
    if a.cmd == "ctl":
        print(json.dumps(ctl(a.control, a.request), indent=1))
        return 0
    if a.cmd == "build":
        argv2 = ["--out", a.out, "--board", a.board] + (["--source"] if a.source else [])
        return _build.main(argv2)
    return 2


if __name__ == "__main__":
    sys.exit(main())
