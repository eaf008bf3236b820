"""``guardline-panel``: the panel firmware's host tool, from the bench to
the installer's laptop (docs/installer.md walks through a site).

    guardline-panel new --kind door|bank [--from-template FILE] [--account N --key HEX
                        --receiver [tcp/|udp/]HOST:PORT ...] [--utc-offset MIN]
                        [--wifi-ssid SSID [--wifi-password -]] -o CONFIG.json
    guardline-panel user add|remove|list CONFIG.json ...
    guardline-panel check CONFIG.json [--board esp32|rp2|sim] [--strict] [--template FILE]
    guardline-panel build [CONFIG.json] -o BUNDLE_DIR [--board sim|esp32|rp2]
    guardline-panel runtime --board esp32|rp2 [--port PORT] FIRMWARE.bin|.uf2
    guardline-panel flash --port PORT [BUNDLE_DIR] [--resume]
    guardline-panel verify --port PORT [BUNDLE_DIR] [--resume]
    guardline-panel walk-test --bundle DIR (--receiver URL --user NAME | --receiver-db PATH
                        | --receiver-events CMD)
                        [--control HOST:PORT --auto --code CODE | --port PORT] [--report DIR]
    guardline-panel sim CONFIG.json [--control HOST:PORT] [--state-dir DIR] [--bundle DIR]
    guardline-panel ctl [--control HOST:PORT] '{"cmd": "state"}'
    guardline-panel hash-code --salt HEX CODE

Exit status: 0 success, 1 a failure (config errors, verification
mismatch, a walk test with zones not passed), 2 a bad command line.
Keys are not printed unless --show-key is given; configs are written 0600.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

from firmware import build as _build
from firmware import provision as _prov
from firmware import sim as _sim
from firmware.device import config as _config
from testkit.control import SimControl


class UsageError(Exception):
    """A bad command line (exit 2)."""


class Failure(Exception):
    """The command ran and failed (exit 1)."""


# -- check, hash-code, ctl (the bench tools) ------------------------------------------------


def check(path: str, board: str | None = None, strict: bool = False,
          template: str | None = None) -> int:
    side = _prov.load_receiver_side(template) if template else None
    cfg, errors, warnings = _prov.check_file(path, board, side)
    for e in errors:
        print(e, file=sys.stderr)
    if errors or cfg is None:
        print("%s: %d error(s)" % (path, len(errors)), file=sys.stderr)
        return 1
    for w in warnings:
        print("warning: " + w, file=sys.stderr)
    print("%s: ok (%s)%s" % (path, _prov.summary(cfg),
                            ", %d warning(s)" % len(warnings) if warnings else ""))
    return 1 if strict and warnings else 0


def hash_code(salt_hex: str, code: str) -> str:
    """The config's code_hash for `code` (sha256(salt || code), as the
    panel's users.hash_code computes it)."""
    return _prov.hash_code(salt_hex, code)


def ctl(control: str, request: str, timeout: float = 10.0) -> dict:
    try:
        sim = SimControl(control)
    except ValueError as e:
        raise UsageError("--control %s" % e) from None
    try:
        req = json.loads(request)
    except ValueError as e:
        raise UsageError("the request is not JSON (%s): e.g. '{\"cmd\": \"state\"}'" % e) \
            from None
    if not isinstance(req, dict) or "cmd" not in req:
        raise UsageError("the request is a JSON object with \"cmd\", e.g. "
                         "'{\"cmd\": \"state\"}' (docs/simulator.md)")
    try:
        return sim(req, timeout)
    except OSError as e:
        raise Failure(str(e)) from None


# -- new, user ---------------------------------------------------------------------------------


def cmd_new(a) -> int:
    if os.path.exists(a.output) and not a.force:
        raise Failure("%s exists (--force to replace it)" % a.output)
    template = _prov.load_template(a.from_template) if a.from_template else None
    receivers = [_prov.parse_receiver(r) for r in a.receiver or []]
    wifi = None
    if a.wifi_ssid:
        wifi = {"ssid": a.wifi_ssid, "password": _wifi_password(a)}
    doc, notes = _prov.new_config(a.kind, template, a.account, a.key, receivers, a.name,
                                  a.heartbeat, wifi, a.utc_offset)
    # What is written is what the panel will accept: the firmware's own
    # validator (firmware/device/config.py), run before a byte is written.
    _, errors = _config.validate(doc)
    if errors:
        raise Failure("the config would not be valid (%s); nothing written" % errors[0])
    _prov.write_private(a.output, _prov.dump_config(doc))
    rx = doc["receiver"]
    dc09 = doc.get("protocol") == "dc09"
    print("%s written (mode 0600): %s panel %r, %saccount %s" % (
        a.output, a.kind, doc["name"], "DC-09 " if dc09 else "", _prov.account_label(doc)))
    for name in ("primary", "backup"):
        if rx.get(name):
            print("  %-8s %s %s:%d" % (name, rx[name]["type"], rx[name]["host"],
                                       rx[name]["port"]))
    key = doc["dc09"].get("key") if dc09 else doc["key"]
    if not key:
        print("  key      none: the panel reports in clear")
    else:
        print("  key      %s" % (key if a.show_key else "(hidden; --show-key to print)"))
    print("  zones    %d, partitions %d, code salt fresh" % (len(doc["zones"]),
                                                            len(doc["partitions"])))
    for n in notes:
        print("note: " + n)
    return 0


def _wifi_password(a) -> str:
    """--wifi-password - reads it from stdin (scripts); otherwise it is
    prompted, never taken from the command line (shell history)."""
    if a.wifi_password == "-":
        pw = sys.stdin.readline().rstrip("\r\n")
    elif a.wifi_password is not None:
        pw = a.wifi_password
    elif not sys.stdin.isatty():
        raise UsageError("no Wi-Fi password for %s: run from a terminal (it is prompted) or "
                         "give it on stdin with --wifi-password -" % a.wifi_ssid)
    else:
        try:
            pw = getpass.getpass("Wi-Fi password for %s: " % a.wifi_ssid)
        except EOFError:
            raise UsageError("no Wi-Fi password given for %s" % a.wifi_ssid) from None
    if not pw:
        raise UsageError("the Wi-Fi password for %s is empty (an open network is not "
                         "supported)" % a.wifi_ssid)
    return pw


def _read_code(a) -> str:
    if a.code == "-":
        return sys.stdin.readline().strip()
    if a.code:
        return a.code
    if not sys.stdin.isatty():
        raise UsageError("no code: give --code CODE (or --code - to read it from stdin)")
    c1 = getpass.getpass("Code for user %d (%s): " % (a.id, a.name))
    c2 = getpass.getpass("Again: ")
    if c1 != c2:
        raise Failure("the two codes differ")
    return c1


def cmd_user(a) -> int:
    doc = _prov.read_json(a.config)
    if a.action == "list":
        for u in doc.get("users", []):
            print("%3s  %-20s %-8s partitions %s%s" % (
                u.get("id"), u.get("name"), u.get("authority", "user"),
                ",".join(str(p) for p in u.get("partitions", [])) or "all",
                "  DURESS" if u.get("duress") else ""))
        return 0
    if a.action == "add":
        parts = [int(p) for p in a.partitions.split(",")] if a.partitions else None
        code = _read_code(a)
        _prov.add_user(doc, a.id, a.name, code, a.authority, parts, a.duress, a.allow_weak)
        what = "added"
    else:
        _prov.remove_user(doc, a.id)
        what = "removed"
    _prov.write_private(a.config, _prov.dump_config(doc))
    print("user %d %s in %s (%d users)" % (a.id, what, a.config, len(doc["users"])))
    return 0


# -- flash, verify, runtime ---------------------------------------------------------------


def _device(a):
    from firmware import flash as _flash  # noqa: PLC0415

    return _flash.Device(a.port, baudrate=a.baud, soft_reset=not a.resume, wait=a.wait)


def cmd_flash(a) -> int:
    from firmware import flash as _flash  # noqa: PLC0415

    last = None
    for attempt in range(a.retries + 1):
        if attempt:
            print("retrying (%d/%d) in %d s: %s" % (attempt, a.retries, a.retry_wait, last),
                  file=sys.stderr)
            time.sleep(a.retry_wait)
        try:
            with _device(a) as dev:
                rec = _flash.flash(dev, a.bundle, clean=a.clean, force=a.force)
            break
        except _flash.LinkError as e:
            last = e  # resumable: files already verified are not rewritten
        except _flash.FlashError as e:
            raise Failure(str(e)) from None
    else:
        raise Failure(str(last))
    path = _flash.write_record(a.bundle, rec)
    print("flashed and verified on the device: %d files, bundle sha256 %s" % (
        len(rec["files"]), rec["bundle_sha256"]))
    print("record: %s" % path)
    if not a.resume:
        print("reset the board (or power-cycle it) to start the panel")
    return 0


def cmd_verify(a) -> int:
    from firmware import flash as _flash  # noqa: PLC0415

    try:
        with _device(a) as dev:
            r = _flash.verify_device(dev, a.bundle)
    except _flash.FlashError as e:
        raise Failure(str(e)) from None
    bad = [f for f in r["files"] if not f["ok"]]
    if a.json:
        print(json.dumps(r, indent=1))
    if bad:
        print("%s: %d file(s) differ from the manifest: %s" % (
            a.port, len(bad), ", ".join(f["name"] for f in bad)), file=sys.stderr)
        return 1
    print("%s: verified on the device: %d files, bundle sha256 %s (firmware %s, board %s, "
          "account %s)" % (a.port, len(r["files"]), r["bundle_sha256"], r["firmware_version"],
                           r["board"], r["account"]))
    return 0


def cmd_runtime(a) -> int:
    from firmware import flash as _flash  # noqa: PLC0415

    try:
        if a.board == "esp32":
            if not a.port:
                raise UsageError("--port is needed for an ESP32 (e.g. /dev/ttyUSB0)")
            _flash.check_esp_image(a.firmware, a.chip)
            tool = _flash.esptool_argv()
            if tool is None and not a.dry_run:
                raise Failure("esptool is not installed: pip install esptool")
            cmds = _flash.esptool_commands(a.firmware, a.port, a.chip, a.baud, not a.no_erase,
                                           tool or ["esptool"],
                                           _flash.esptool_major(tool) if tool else 5)
            for c in cmds:
                print("$ " + " ".join(c))
                if not a.dry_run and subprocess.call(c) != 0:
                    raise Failure("esptool failed; hold BOOT while pressing EN/RESET if it "
                                  "cannot connect")
        else:
            blocks = _flash.check_uf2(a.firmware)
            drives = [a.drive] if a.drive else _flash.uf2_drives()
            if not drives:
                raise Failure("no RPI-RP2 drive: unplug the Pico W, hold BOOTSEL, plug it in, "
                              "release BOOTSEL (or give --drive)")
            if len(drives) > 1:
                raise Failure("several RP2 boot drives (%s): give --drive" % ", ".join(drives))
            print("copy %s (%d UF2 blocks) to %s" % (a.firmware, blocks, drives[0]))
            if not a.dry_run:
                _flash.copy_uf2(a.firmware, drives[0])
        if a.dry_run:
            print("(dry run: nothing done)")
            return 0
        if a.port and a.wait_repl:
            ident = _flash.wait_for_repl(a.port, a.wait_repl)
            print("MicroPython answers on %s: %s" % (a.port, ident["version"]))
    except _flash.FlashError as e:
        raise Failure(str(e)) from None
    print("runtime installed; next: guardline-panel flash --port PORT BUNDLE_DIR")
    return 0


# -- walk test ----------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _say(text: str) -> None:
    print("%s %s" % (_now(), text), flush=True)


CONSOLE_PASSWORD_ENV = "GUARDLINE_CONSOLE_PASSWORD"


def _console_source(a, account, started: float):
    """The operator console's JSON API as the proof source: --user, the
    password from $GUARDLINE_CONSOLE_PASSWORD or a prompt (never the
    command line, where it would land in the shell history)."""
    from firmware import walktest as W  # noqa: PLC0415

    url = urllib.parse.urlsplit(a.receiver)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UsageError("--receiver: the console's URL, e.g. https://cs1.example:8443")
    if not a.user:
        raise UsageError("--receiver needs --user (a console user with the view permission)")
    password = os.environ.get(CONSOLE_PASSWORD_ENV)
    if not password:
        if not sys.stdin.isatty():
            raise UsageError("no console password: set %s or run from a terminal"
                             % CONSOLE_PASSWORD_ENV)
        password = getpass.getpass("Console password for %s at %s: " % (a.user, a.receiver))
    if url.scheme == "http" and url.hostname not in ("127.0.0.1", "::1", "localhost"):
        print("warning: %s is plain HTTP: the console password and the session cross the "
              "network in clear (use the console's https:// address)" % a.receiver,
              file=sys.stderr)
    try:
        return W.ConsoleSource(a.receiver, account, a.user, password, started_at=started)
    except OSError as e:
        raise Failure(str(e)) from None


def _walk_config(a) -> tuple[dict, dict | None]:
    """The config walked (the bundle's, or --config) and the bundle's
    manifest (None with --config); a bundle that differs from its
    manifest, or a config with errors, is a Failure."""
    manifest = None
    if a.bundle:
        try:
            manifest = _build.read_manifest(a.bundle)
        except _build.BundleError as e:
            raise Failure(str(e)) from None
        bad = _build.check_bundle(a.bundle, manifest)
        if bad:
            raise Failure("%s: the bundle differs from its manifest: %s" % (a.bundle,
                                                                          "; ".join(bad)))
        if not manifest.get("config"):
            raise Failure("%s: a bundle without a config (build it with CONFIG.json)"
                          % a.bundle)
        config = os.path.join(a.bundle, manifest["config"])
    elif a.config:
        config = a.config
    else:
        raise UsageError("give --bundle DIR (the bundle flashed) or --config FILE")
    cfg, errors, _ = _config.load(config)
    if errors or cfg is None:
        raise Failure("%s: %s (run guardline-panel check)" % (config, errors[0]))
    return cfg, manifest


def _walk_zones(a, cfg: dict) -> list[int]:
    """The zones to walk: --zones (each in the config), or all of them."""
    zones = {z["id"]: z for z in cfg["zones"]}
    if not a.zones:
        return list(zones)
    try:
        ids = [int(x) for x in a.zones.split(",") if x.strip()]
    except ValueError:
        raise UsageError("--zones: a list of zone numbers, e.g. 1,2,5") from None
    missing = [i for i in ids if i not in zones]
    if missing:
        raise UsageError("--zones: %s not in the config (zones: %s)" % (
            missing[0], ",".join(str(i) for i in zones)))
    return ids


def _walk_source(a, account, started: float):
    """Where the receiver's record comes from (the proof): its console, its
    store, or an ``events --json --follow`` stream."""
    from firmware import walktest as W  # noqa: PLC0415

    if sum(1 for x in (a.receiver, a.receiver_db, a.receiver_events) if x) > 1:
        raise UsageError("give one of --receiver, --receiver-db, --receiver-events")
    if a.receiver_db:
        try:
            return W.StoreSource(a.receiver_db, account)
        except OSError as e:
            raise Failure("receiver store: %s" % e) from None
    if a.receiver_events:
        return W.StreamSource(a.receiver_events, account=account, started_at=started)
    if a.receiver:
        return _console_source(a, account, started)
    raise UsageError("give --receiver URL, --receiver-db PATH or --receiver-events CMD "
                     "(the receiver's record is the proof)")


def _walk_driver(a, cfg: dict, source, stop: threading.Event):
    """Who trips the zones: (driver, the report's words for it, the
    console tail or None).  --auto drives a simulated panel through its
    control socket, checked before the walk starts; otherwise the
    installer does, and Enter at the terminal ends the walk."""
    from firmware import walktest as W  # noqa: PLC0415

    if a.auto:
        code = a.code or (getpass.getpass("Code to arm/disarm the simulated panel: ")
                          if sys.stdin.isatty() else None)
        if not code:
            raise UsageError("--auto needs --code (a master or manager code, to arm and "
                             "bypass)")
        try:
            sim = SimControl(a.control)
            sim({"cmd": "ping"})  # before the walk starts, not in its middle
        except ValueError as e:
            raise UsageError("--control %s" % e) from None
        except OSError as e:
            source.close()
            raise Failure(str(e)) from None
        driver = W.AutoDriver(sim, code, W.zone_wait(cfg, a.zone_timeout), _say,
                              walk_mode=not a.armed_walk)
        return driver, ("the tool, through the simulated panel's control socket (%s)"
                        % a.control), None
    tail = W.ConsoleTail(a.port, _say) if a.port else None
    if sys.stdin.isatty():
        def enter_ends_the_walk():
            sys.stdin.readline()
            stop.set()
        threading.Thread(target=enter_ends_the_walk, daemon=True).start()
    return W.ManualDriver(_say), "the installer on site", tail


def _walk_provenance(a, manifest: dict | None) -> tuple[dict | None, dict | None]:
    """(the bundle walked, its verified flash record on the device), for
    the report; None where there is none (a flash of another bundle is
    none)."""
    from firmware import flash as _flash  # noqa: PLC0415

    bundle = None
    if manifest:
        bundle = {k: manifest.get(k) for k in ("bundle_sha256", "firmware_version", "board",
                                                "built_at", "mpy_cross_version",
                                                "source_revision")}
    rec = _flash.latest_record(a.bundle) if a.bundle else None
    flash = {k: rec.get(k) for k in ("port", "finished_at", "bundle_sha256", "verified")} \
        if rec and rec.get("bundle_sha256") == (manifest or {}).get("bundle_sha256") else None
    return bundle, flash


def _print_walk_result(walk, ids: list[int], r: dict) -> None:
    from firmware import walktest as W  # noqa: PLC0415

    print()
    for z in walk.walked(ids):
        print(W.zone_line(z))
    for u in r["unexpected"]:
        print("  [FAIL] %s" % u["text"])
    print("walk test %s: %s" % (r["result"], ", ".join(
        "%d %s" % (v, k) for k, v in sorted(r["summary"].items()) if k != "zones")))


def cmd_walk_test(a) -> int:
    from firmware import walktest as W  # noqa: PLC0415

    cfg, manifest = _walk_config(a)
    # The account the receiver files the events under: a DC-09 panel's is
    # its dc09 account (hex digits), not the native number it does not use.
    account = cfg["dc09"]["account"] if cfg.get("protocol") == "dc09" else cfg["account"]
    if a.account is not None and str(a.account) != str(account).upper():
        raise UsageError("--account %s but the config is account %s" % (a.account, account))
    ids = _walk_zones(a, cfg)
    if a.auto and not a.control:
        raise UsageError("--auto drives a simulated panel: give --control HOST:PORT")
    started = time.time()
    source = _walk_source(a, account, started)
    walk = W.WalkTest(account, cfg["zones"], cfg["partitions"])
    stop = threading.Event()
    driver, mode, tail = _walk_driver(a, cfg, source, stop)
    site = source.site()
    if isinstance(source, W.ConsoleSource):
        # the walk's alarms must page nobody: the account on test for the
        # walk, ended when it is over (the console's own audit says who)
        try:
            p = source.place_on_test(a.timeout + 300, "walk test by %s (guardline-panel "
                                     "walk-test)" % (a.installer or a.user))
        except OSError as e:
            source.close()
            raise Failure(str(e)) from None
        _say("walk test: %s on test until %s (the console ends it with the walk)"
             % (p["words"], W.iso_time(p["ends_at"])))
    _say("walk test: account %s (%s), %d zones; proof: %s" % (
        account, site.get("site_name") or cfg["name"], len(ids), source.describe()))
    try:
        reason = W.run(walk, source, driver, ids, a.timeout, a.until_pass, _say, stop)
    except OSError as e:
        raise Failure(str(e)) from None
    finally:
        source.close()
        if tail:
            tail.close()
    bundle, flash = _walk_provenance(a, manifest)
    meta = {"account": account, "site_name": site.get("site_name") or cfg["name"],
            "site_address": site.get("site_address") or "", "panel_name": cfg["name"],
            "panel_kind": cfg["kind"], "installer": a.installer or getpass.getuser(),
            "started_at": W.iso_time(started), "ended_at": W.iso_time(time.time()),
            "ended_because": reason, "mode": mode, "receiver_source": source.describe(),
            "bundle": bundle, "flash": flash}
    r = W.report(walk, ids, meta)
    _print_walk_result(walk, ids, r)
    jp, mp, hp = W.write_report(a.report, r)
    print("report: %s, %s, %s" % (mp, hp, jp))
    return 0 if r["result"] == "PASS" else 1


# -- the command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="guardline-panel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    _sim.add_arguments(sub.add_parser("sim", help="run the panel under the MicroPython VM"))
    _add_new(sub)
    _add_user(sub)
    _add_check(sub)

    p = sub.add_parser("hash-code", help="code_hash for a user code")
    p.add_argument("--salt", required=True, help="the config's code_salt (hex)")
    p.add_argument("code")

    p = sub.add_parser("ctl", help="send one control-socket command to a simulated panel")
    p.add_argument("--control", default=_sim.DEFAULT_CONTROL)
    p.add_argument("request", help='JSON, e.g. \'{"cmd": "state"}\'')

    _build.add_arguments(sub.add_parser(
        "build", help="compile the firmware and bundle it with a config and a manifest"))
    _add_flash_and_verify(sub)
    _add_runtime(sub)
    _add_walk_test(sub)
    return ap


def _add_new(sub) -> None:
    """``new``: a starting config for a site."""
    p = sub.add_parser("new", help="write a starting config for a site (mode 0600)")
    p.add_argument("--kind", required=True, choices=_config.KINDS)
    p.add_argument("--from-template", metavar="FILE",
                   help="the JSON guardline-receiver accounts add --panel-template wrote")
    p.add_argument("--account", type=int, help="account number (overrides the template)")
    p.add_argument("--key", help="account key, hex (overrides the template)")
    p.add_argument("--receiver", action="append", metavar="[tcp/|udp/]HOST:PORT",
                   help="receiver address: first primary, second backup (overrides the "
                        "template)")
    p.add_argument("--name", help="panel / site name (default: the template's site)")
    p.add_argument("--heartbeat", type=int, metavar="S", help="heartbeat_s")
    p.add_argument("--utc-offset", type=int, metavar="MIN",
                   help="the site's offset from UTC in minutes (default: this computer's "
                        "time zone now)")
    p.add_argument("--wifi-ssid", help="Wi-Fi network of a board (password prompted; "
                   "--wifi-password - reads it from stdin)")
    p.add_argument("--wifi-password", help=argparse.SUPPRESS)
    p.add_argument("--show-key", action="store_true", help="print the account key")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("-o", "--output", required=True, metavar="CONFIG.json")


def _add_user(sub) -> None:
    """``user add|remove|list``: the panel's users."""
    p = sub.add_parser("user", help="add, remove or list the panel's users")
    usub = p.add_subparsers(dest="action", required=True)
    u = usub.add_parser("add", help="add a user; the code is prompted (twice) unless --code")
    u.add_argument("config")
    u.add_argument("--id", type=int, required=True)
    u.add_argument("--name", required=True)
    u.add_argument("--code", help="4-8 digits; '-' reads it from stdin")
    u.add_argument("--authority", choices=_config.AUTHORITIES, default="user")
    u.add_argument("--partitions", help="e.g. 1,3 (default: all)")
    u.add_argument("--duress", action="store_true", help="a duress code (sends 121)")
    u.add_argument("--allow-weak", action="store_true", help="accept 1111, 1234 and the like")
    u = usub.add_parser("remove")
    u.add_argument("config")
    u.add_argument("--id", type=int, required=True)
    u = usub.add_parser("list")
    u.add_argument("config")


def _add_check(sub) -> None:
    """``check``: validate a config."""
    p = sub.add_parser("check", help="validate a panel config")
    p.add_argument("config")
    p.add_argument("--board", choices=sorted(_build.BOARD_ONLY),
                   help="also warn about what this board needs (Wi-Fi, a reachable receiver)")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--template", metavar="FILE",
                   help="the receiver's panel template (or its account as guardline-receiver "
                        "accounts show N --json prints it): each path's heartbeat must be "
                        "at most what the receiver supervises")


def _port_args(p) -> None:
    """The serial port options of flash and verify."""
    p.add_argument("--port", required=True, help="serial port (/dev/ttyUSB0, /dev/ttyACM0, "
                   "COM3, a pty, rfc2217://...)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--resume", action="store_true",
                   help="no soft reset (mpremote resume; needed for the unix port)")
    p.add_argument("--wait", type=int, default=0, metavar="S",
                   help="wait up to S seconds for the port to appear")


def _add_flash_and_verify(sub) -> None:
    """``flash`` and ``verify``: a bundle on a board."""
    p = sub.add_parser("flash", help="install a bundle with mpremote, verify on the device")
    _port_args(p)
    p.add_argument("bundle", nargs="?", default=os.path.join("build", "firmware"))
    p.add_argument("--clean", action="store_true",
                   help="also remove .py/.mpy files the bundle does not have")
    p.add_argument("--force", action="store_true", help="flash a bundle built for another "
                   "board")
    p.add_argument("--retries", type=int, default=2,
                   help="reconnect and resume after a link error (default %(default)s)")
    p.add_argument("--retry-wait", type=int, default=3, help=argparse.SUPPRESS)

    p = sub.add_parser("verify", help="prove what is on a board (sha256 on the device)")
    _port_args(p)
    p.add_argument("bundle", nargs="?", help="compare with this bundle (default: the "
                   "manifest on the device)")
    p.add_argument("--json", action="store_true")


def _add_runtime(sub) -> None:
    """``runtime``: MicroPython itself on a board."""
    p = sub.add_parser("runtime", help="install MicroPython itself (esptool / UF2 copy)")
    p.add_argument("--board", required=True, choices=("esp32", "rp2"))
    p.add_argument("--chip", default="esp32", help="esp32 variant for esptool (default "
                   "%(default)s)")
    p.add_argument("--port", help="serial port (esp32: esptool's; both: wait for the REPL)")
    p.add_argument("--baud", type=int, default=460800)
    p.add_argument("--no-erase", action="store_true", help="do not erase the flash first")
    p.add_argument("--drive", help="rp2: the RPI-RP2 drive's mount point")
    p.add_argument("--wait-repl", type=float, default=0, metavar="S",
                   help="then wait up to S s for MicroPython to answer on --port")
    p.add_argument("--dry-run", action="store_true", help="check and print, do nothing")
    p.add_argument("firmware", help="MicroPython .bin (esp32) or .uf2 (rp2)")


def _add_walk_test(sub) -> None:
    """``walk-test``: commissioning, proven by the receiver's record."""
    p = sub.add_parser("walk-test", help="commission: trip every zone, proven by the "
                       "receiver's record; write the report")
    p.add_argument("--bundle", help="the bundle flashed (config + manifest for the report)")
    p.add_argument("--config", help="the panel config, if there is no bundle")
    p.add_argument("--account", help="check that the config is this account")
    p.add_argument("--receiver-db", metavar="PATH",
                   help="the receiver's store: its SQLite file or postgresql:// URL")
    p.add_argument("--receiver-events", metavar="CMD",
                   help="a command printing guardline-receiver events --json --follow")
    p.add_argument("--receiver", metavar="URL",
                   help="the receiver's operator console (its JSON API), e.g. "
                        "https://cs1.example:8443; with --user, password from $%s or "
                        "prompted" % CONSOLE_PASSWORD_ENV)
    p.add_argument("--user", help="console user for --receiver (needs the view permission)")
    p.add_argument("--zones", help="zones to walk, e.g. 1,2,5 (default: all)")
    p.add_argument("--control", metavar="HOST:PORT", help="a simulated panel's control socket")
    p.add_argument("--auto", action="store_true", help="trip the simulated panel's zones "
                   "through --control")
    p.add_argument("--code", help="with --auto: the installer's master code (walk-test "
                   "mode; or to arm, bypass, disarm)")
    p.add_argument("--armed-walk", action="store_true", help="with --auto: do not use the "
                   "panel's walk-test mode; arm and walk (real alarms at the receiver)")
    p.add_argument("--port", help="a real panel's console (USB serial): shown as hints")
    p.add_argument("--report", default="reports", metavar="DIR",
                   help="where the report goes (default %(default)s)")
    p.add_argument("--installer", help="name on the report (default: login name)")
    p.add_argument("--timeout", type=float, default=1800, metavar="S",
                   help="end the walk after S seconds (default %(default)s)")
    p.add_argument("--zone-timeout", type=float, default=60, metavar="S",
                   help="with --auto: time per zone (default %(default)s; at least the "
                   "entry delay + abort window + 15 s, when an armed walk waits for an "
                   "entry/exit zone's held alarm)")
    p.add_argument("--until-pass", action="store_true",
                   help="keep going until every zone passed (fix and re-trip on the spot)")


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.cmd == "sim":
            return _sim.run_args(a)
        if a.cmd == "check":
            return check(a.config, a.board, a.strict, a.template)
        if a.cmd == "hash-code":
            print(hash_code(a.salt, a.code))
            return 0
        if a.cmd == "ctl":
            print(json.dumps(ctl(a.control, a.request), indent=1))
            return 0
        if a.cmd == "build":
            return _build.run_args(a)
        return {"new": cmd_new, "user": cmd_user, "flash": cmd_flash, "verify": cmd_verify,
                "runtime": cmd_runtime, "walk-test": cmd_walk_test}[a.cmd](a)
    except UsageError as e:
        print("guardline-panel %s: %s" % (a.cmd, e), file=sys.stderr)
        return 2
    except (Failure, _prov.ProvisionError) as e:
        print("guardline-panel %s: %s" % (a.cmd, e), file=sys.stderr)
        return 1
    except OSError as e:  # a file or directory the command cannot use
        where = e.filename if e.filename else ""
        print("guardline-panel %s: %s%s" % (a.cmd, "%s: " % where if where else "",
                                           e.strerror or e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("guardline-panel %s: interrupted" % a.cmd, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
