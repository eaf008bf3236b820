"""guardline-receiver: run the central-station receiver and operate its store.

    guardline-receiver serve [--config receiver.toml] [--db PATH] [--init] [--tcp HOST:PORT]...
                             [--udp HOST:PORT]... [--serial URL]... [--metrics HOST:PORT]
                             [--web HOST:PORT] [--dc09-tcp HOST:PORT]... [--dc09-udp HOST:PORT]...
                             [--ready-file FILE] [--event-loop auto|uvloop|asyncio]
                             [--workers N]   (N processes on the same ports: PostgreSQL only)
    guardline-receiver accounts add|list|show|template|import|export ...
    guardline-receiver events [--account N] [--since T] [--follow] [--json]
    guardline-receiver alarms list|show|ack|claim|take-over|release|step|call|passcode|resolve ...
    guardline-receiver alarms supervisor-queue | sites ... | plans ... | dispositions ...
    guardline-receiver decode HEX|DC-09-TEXT [--key K] [--key-format hex|ascii]
    guardline-receiver users add NAME --role operator|supervisor|administrator
    guardline-receiver users list [--json] | users passwd NAME
    guardline-receiver schedules|test|zones|reports ...   (receiver.rules_cli)

Every subcommand takes --config and --db (the database path from the
config file, else var/receiver.db).  Exit status: 0 success, 1 a runtime
failure (not found, no store, store error), 2 a bad command line or
configuration.  docs/receiver.md is the operator's guide.

A store is never made as a side effect: the commands that read or change
what is in it refuse a store that does not exist (naming the path they
looked at); only `serve --init` and the commands that add something
(`accounts add`, `accounts import`, `users add`) create one, and say so.
Arguments are checked before the store is opened, so a typo creates
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
import time

from receiver import config as _config
from receiver import logfmt
from receiver.cli_errors import Failure, UsageError, more
from receiver.times import iso_utc, parse_instant

_LOGGER = logging.getLogger(__name__)

# Seconds between polls of the store for `events --follow`.
FOLLOW_POLL_S = 1.0


# (exit 2, exit 1: receiver.cli_errors, shared with receiver.workflow_cli)
__all__ = ["Failure", "UsageError", "build_parser", "main", "parse_time"]


# -- helpers -----------------------------------------------------------------------------


def _load_config(args) -> _config.Config:
    cfg = _config.load(args.config)
    if args.db:
        cfg.db = args.db
    return cfg


def _store_origin(args, cfg) -> str:
    """Where the store's location came from, for an operator who finds
    there is no store there."""
    if args.db:
        return "given by --db"
    if cfg.source is not None and cfg.db != _config.DEFAULT_DB:
        from receiver.store import is_url  # noqa: PLC0415

        if is_url(cfg.db):
            return "[store] url in %s" % cfg.source
        return "[store] in %s, relative to that file" % cfg.source
    return "the default %s, in the current directory" % _config.DEFAULT_DB


async def _open_store(cfg, create: bool = False):
    """Open the store ``cfg`` names.  ``create``: only for commands that
    add something; the rest get StoreMissing for a store that is not
    there (main() explains it)."""
    from receiver.store import StoreMissing, mask_url  # noqa: PLC0415
    from receiver.store_factory import make_store  # noqa: PLC0415

    try:
        store = make_store(cfg.db, create=create)
        await store.open()
    except StoreMissing:
        raise
    except Exception as e:  # noqa: BLE001
        raise Failure("cannot open store %s: %s" % (mask_url(cfg.db), e)) from None
    return store


def _json_arg(text: str, what: str):
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise UsageError("%s: %s" % (what, e)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError("%s is not valid JSON: %s" % (what, e)) from None


def parse_time(text: str) -> float:
    """Unix seconds, ISO 8601 (UTC unless it says otherwise), or a relative
    '30s', '15m', '2h', '7d' (that long ago)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return time.time() - float(m.group(1)) * mult
    t = parse_instant(text)
    if t is None:
        raise UsageError("bad time %r (use Unix seconds, ISO 8601 or e.g. 15m)" % text)
    return t


def _iso(t) -> str:
    return "-" if t is None else iso_utc(t)


def _write_private(path: str, text: str) -> None:
    """Write a file readable by its owner only (it holds a key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# -- serve -------------------------------------------------------------------------------


def cmd_serve(args) -> int:
    cfg = _load_config(args)
    try:
        if args.tcp:
            cfg.tcp = [_config.parse_addr(a, "--tcp") for a in args.tcp]
        if args.udp:
            cfg.udp = [_config.parse_addr(a, "--udp") for a in args.udp]
        if args.dc09_tcp:
            cfg.dc09_tcp = [_config.parse_addr(a, "--dc09-tcp") for a in args.dc09_tcp]
        if args.dc09_udp:
            cfg.dc09_udp = [_config.parse_addr(a, "--dc09-udp") for a in args.dc09_udp]
        if args.serial:
            cfg.serial = [_config.SerialSpec(u) for u in args.serial]
        if args.metrics:
            cfg.metrics = _config.parse_addr(args.metrics, "--metrics")
        if args.web:
            cfg.web = _config.parse_addr(args.web, "--web")
    except _config.ConfigError as e:
        raise UsageError(str(e)) from None
    if not (cfg.tcp or cfg.udp or cfg.serial or cfg.dc09_tcp or cfg.dc09_udp):
        raise UsageError("nothing to listen on: give --tcp, --udp, --serial, --dc09-tcp or "
                         "--dc09-udp, or [listen] in the config file")
    from receiver import workers  # noqa: PLC0415
    from receiver.store import is_url  # noqa: PLC0415

    why = workers.refusal(cfg, args.workers, is_url(cfg.db))
    if why:
        raise UsageError(why)
    workers.metrics_addresses(cfg, args.workers)  # refuses ports past 65535 or taken
    # a new store only when asked: a serve started in the wrong directory,
    # or with a mistyped --db, must not run on an empty store
    cfg.create_store = args.init
    level = args.log_level or cfg.log_level
    logfmt.setup(level)
    _raise_fd_limit(cfg.max_connections + cfg.reserved_descriptors)
    factory, loop_name = event_loop_factory(args.event_loop)
    if args.workers == 1:
        return _run_serve(cfg, args.ready_file, factory, loop_name)

    def worker(wcfg, number: int, ready: str) -> int:
        logfmt.setup(level, tag=logfmt.kv(worker=number))
        return _serve_in_worker(args, wcfg, ready, factory, loop_name)
    return workers.serve(cfg, args.workers, args.ready_file, loop_name, worker)


def _run_serve(cfg, ready_file, factory, loop_name: str) -> int:
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(cfg, ready_file, loop_name))


def _serve_in_worker(args, cfg, ready_file, factory, loop_name: str) -> int:
    """One worker of ``serve --workers N`` (a forked child): the receiver,
    with main()'s words for what stops it from starting."""
    from receiver.store import StoreMissing  # noqa: PLC0415

    try:
        return _run_serve(cfg, ready_file, factory, loop_name)
    except StoreMissing as e:
        print(_store_missing_message(args, e), file=sys.stderr)
        return 1
    except (UsageError, _config.ConfigError) as e:
        print("guardline-receiver: %s" % e, file=sys.stderr)
        return 2
    except Failure as e:
        print("guardline-receiver: %s" % e, file=sys.stderr)
        return 1


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def event_loop_factory(choice: str = "auto"):
    """(loop factory, name) for ``serve --event-loop``: uvloop (libuv: fewer
    Python steps per read and write) where installed, which it is on Linux
    (a dependency there); asyncio's own loop elsewhere or when asked.  The
    receiver is the same program on either: the suite runs it on both."""
    if choice != "asyncio":
        try:
            import uvloop  # noqa: PLC0415
        except ImportError:
            if choice == "uvloop":
                raise UsageError("--event-loop uvloop: uvloop is not installed "
                                 "(pip install uvloop; Linux and macOS only)") from None
        else:
            return uvloop.new_event_loop, "uvloop " + uvloop.__version__
    return asyncio.new_event_loop, "asyncio"


def _raise_fd_limit(want: int) -> None:
    """Raise the soft descriptor limit towards ``want`` (at most the hard
    limit).  The receiver sizes its connection cap from what it got and
    logs it (receiver.admission.connection_budget)."""
    try:
        import resource  # noqa: PLC0415
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError):
        pass


async def _serve(cfg, ready_file, loop_name: str = "asyncio") -> int:
    from receiver.app import Receiver  # noqa: PLC0415
    from receiver.store import StoreMissing  # noqa: PLC0415

    rx = Receiver(cfg)
    try:
        await rx.start()
    except StoreMissing:
        raise  # main() says where it looked and what to do
    except OSError as e:
        print("guardline-receiver: cannot listen: %s" % e, file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - e.g. a schema newer than us
        print("guardline-receiver: cannot start: %s" % e, file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _LOGGER.info("serving event_loop=%s", logfmt.q(loop_name))
    if ready_file:
        info = {k: [list(a) for a in v] if k in ("tcp", "udp", "dc09_tcp", "dc09_udp") else v
                for k, v in rx.addresses.items()}
        info["pid"] = os.getpid()
        info["event_loop"] = loop_name
        tmp = ready_file + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(info, f)
            os.replace(tmp, ready_file)
        except OSError as e:
            print("guardline-receiver: cannot write --ready-file %s: %s" % (
                ready_file, e.strerror or e), file=sys.stderr)
            await rx.stop()
            return 1
    await stop.wait()
    _LOGGER.info("signal received: shutting down")
    await rx.stop()
    return 0


# -- accounts ------------------------------------------------------------------------------

# Hosts that mean "every address of this machine" in a listener: a panel
# cannot report to them, it needs the address it reaches the receiver at.
WILDCARD_HOSTS = frozenset(["0.0.0.0", "::", ""])


def _native_key(text) -> bytes:
    """A native account's key from --key (hex), or 32 fresh random bytes.
    The length is the account's rule (Account.validate)."""
    if not text:
        return secrets.token_bytes(32)
    try:
        return bytes.fromhex(text)
    except ValueError:
        # the text itself is not echoed: it may be a key
        raise UsageError("--key is not hex: a native account's key is 16..64 bytes written "
                         "as 32..128 hex digits (leave --key out to generate one)") from None


def _dc09_key(text, fmt: str) -> bytes:
    """A DC-09 account's AES key from --key/--key-format; none (b"") is a
    line that reports unencrypted."""
    from protocol import dc09  # noqa: PLC0415
    from protocol.errors import LocalProtocolError  # noqa: PLC0415

    if not text:
        return b""
    try:
        return dc09.parse_key(text, fmt)
    except LocalProtocolError as e:
        if fmt == "hex" and len(text) in (16, 24, 32):
            hint = ("; a key of %d characters written as text, as most panels' menus take "
                    "it, needs --key-format ascii" % len(text))
        elif fmt == "hex":
            hint = "; written in hex an AES-128/192/256 key is 32, 48 or 64 hex digits"
        elif re.fullmatch(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{48}|[0-9A-Fa-f]{64}", text):
            hint = "; it looks like hex: leave out --key-format ascii"
        else:
            hint = "; as text an AES-128/192/256 key is 16, 24 or 32 characters"
        raise UsageError("--key: %s%s" % (e, hint)) from None


def _lat_lon_arg(text: str) -> tuple[float, float]:
    """--site-position LAT,LON in decimal degrees (latitude first, as a
    person reads a map; the GeoJSON files are longitude first)."""
    parts = text.split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise UsageError("--site-position: expected LAT,LON in decimal degrees (e.g. "
                         "52.3702,4.8952), got %r" % text) from None
    if not -90 <= lat <= 90:
        hint = " (latitude first: LAT,LON)" if -90 <= lon <= 90 else ""
        raise UsageError("--site-position: latitude %s is not -90..90%s" % (lat, hint))
    if not -180 <= lon <= 180:
        raise UsageError("--site-position: longitude %s is not -180..180" % lon)
    return lat, lon


def _paths_arg(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError("--paths: expected path numbers separated by commas, 1 (primary) "
                         "and/or 2 (backup), e.g. 1,2; got %r" % text) from None


def _receiver_arg(text: str) -> dict:
    """``[tcp/|udp/]HOST:PORT`` to a template receiver entry."""
    transport, _, addr = text.rpartition("/") if "/" in text else ("tcp", "", text)
    if transport not in ("tcp", "udp"):
        raise UsageError("--receiver %s: the transport is tcp/ or udp/ (e.g. "
                         "tcp/rx1.example.net:7700)" % text)
    try:
        host, port = _config.parse_addr(addr, "--receiver %s" % text)
    except _config.ConfigError as e:
        raise UsageError(str(e)) from None
    return {"transport": transport, "host": host, "port": port}


def panel_template(cfg, acct, receivers: list | None = None) -> dict:
    """What `guardline-panel new --from-template` builds a panel's config
    from (firmware/provision.py reads it; docs/receiver.md, "Panel
    templates"): the account, its key, the addresses the panel reports to
    (``receivers``, else this receiver's listeners for the account's
    protocol) and how the receiver supervises each path.  Refused
    (UsageError) when there is no address a panel could use."""
    from receiver.supervision import account_profile  # noqa: PLC0415

    dc = acct.protocol == "dc09"
    if receivers:
        rx = [_receiver_arg(r) for r in receivers]
    else:
        rx = [{"transport": t, "host": h, "port": p}
              for t, addrs in (("tcp", cfg.dc09_tcp if dc else cfg.tcp),
                               ("udp", cfg.dc09_udp if dc else cfg.udp))
              for h, p in addrs]
        if not rx:
            keys = "dc09_tcp/dc09_udp" if dc else "tcp/udp"
            where = ("%s has no [listen] %s" % (cfg.source, keys) if cfg.source
                     else "no --config given, so no [listen] %s is known" % keys)
            raise UsageError("no receiver address for the panel template: %s; give "
                             "--receiver tcp/HOST:PORT (the address panels reach this "
                             "receiver at; twice for a backup path)" % where)
    for r in rx:
        if r["host"] in WILDCARD_HOSTS or not r["port"]:
            what = ("--receiver %s/%s:%d is" if receivers else "the receiver listens on "
                    "%s/%s:%d,") % (r["transport"], r["host"], r["port"])
            raise UsageError(
                "no usable receiver address for the panel template: %s every address of "
                "this machine (or no port), and a panel needs the address it reaches the "
                "receiver at; give --receiver %s/HOST:PORT (once per path)"
                % (what, r["transport"]))
    prof = account_profile(acct, cfg.supervision)
    return {
        "account": acct.number if dc else int(acct.number),
        "key": acct.key.hex(), "protocol": acct.protocol, "receivers": rx,
        # the interval of path 1 (the panel's heartbeat_s), as before
        "heartbeat_s": prof.interval_s if prof else (acct.heartbeat_s
                                                     or cfg.supervision.interval_s),
        # each supervised path: heard at least every heartbeat_s, failed
        # (350) after heartbeat_s + grace_s of silence; [] = unsupervised
        "supervision": [{"path": p, "heartbeat_s": prof.interval_s, "grace_s": prof.grace_s}
                        for p in prof.paths] if prof else [],
        "site_name": acct.site_name, "zones": acct.zones, "partitions": acct.partitions}


def _write_template(path: str, tmpl: dict) -> None:
    try:
        _write_private(path, json.dumps(tmpl, indent=2) + "\n")
    except OSError as e:
        raise Failure("cannot write the panel template %s: %s" % (path, e.strerror or e)) \
            from None
    print("panel template written to %s (mode 0600)" % path)


def _new_account(args):
    """The Account ``accounts add`` describes, checked: UsageError for any
    bad argument, before the store is touched."""
    from receiver.records import Account  # noqa: PLC0415

    if args.protocol == "dc09":
        args.number = args.number.upper()  # hex digits, stored upper case
        key = _dc09_key(args.key, args.key_format)
    elif args.key_format == "ascii":
        raise UsageError("--key-format ascii is for DC-09 accounts")
    else:
        key = _native_key(args.key)
    if args.test_grace is not None and args.test_interval is None:
        raise UsageError("--test-grace is the grace of a periodic test: give --test-interval "
                         "too")
    acct = Account(
        number=args.number, key=key, protocol=args.protocol,
        panel_kind=args.kind or "", site_name=args.site or "",
        site_address=args.address or "", region=args.region or "",
        zones=_json_arg(args.zones, "--zones") if args.zones else {},
        partitions=_json_arg(args.partitions, "--partitions") if args.partitions else {},
        heartbeat_s=args.heartbeat, grace_s=args.grace,
        supervised_paths=_paths_arg(args.paths), supervised=not args.unsupervised,
        test_interval_s=args.test_interval, test_grace_s=args.test_grace,
        contacts=_json_arg(args.contacts, "--contacts") if args.contacts else [],
        site_radius_m=args.arrival_radius, track_retention_days=args.track_retention_days)
    if args.site_position:
        acct.site_lat, acct.site_lon = _lat_lon_arg(args.site_position)
    try:
        acct.validate()
    except (ValueError, TypeError) as e:
        raise UsageError("account %s: %s" % (args.number, e)) from None
    _note_kind(acct.number, acct.panel_kind)
    return acct


def _note_kind(number: str, kind: str) -> None:
    """A kind the receiver gives no meaning to is allowed (an ATM, a home:
    a fixed site), but a typo for a vehicle's kind would quietly switch off
    its vehicle checks: say what the receiver makes of it."""
    from receiver.vehicles.loop import VEHICLE_KINDS  # noqa: PLC0415

    if kind and kind not in ("door", "bank") + VEHICLE_KINDS:
        print("note: account %s, kind %r: a fixed site to the receiver (vehicle checks and "
              "patrol dispatch are for the kinds %s)" % (number, kind, " and ".join(
                  VEHICLE_KINDS)), file=sys.stderr)


def _read_import(path: str) -> list:
    """The accounts in an import file, each checked (UsageError), as
    (account, whether the record gave its key)."""
    from receiver.records import Account  # noqa: PLC0415

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError("import %s: %s" % (path, e.strerror or e)) from None
    except UnicodeDecodeError as e:
        raise UsageError("import %s: not UTF-8 text (%s)" % (path, e.reason)) from None
    text = text.strip()
    try:
        rows = json.loads(text) if text.startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UsageError("import %s: not JSON: %s" % (path, e)) from None
    if not rows:
        raise UsageError("import %s: no accounts in it" % path)
    accts = []
    for i, d in enumerate(rows):
        try:
            d = dict(d)
            keyed = "key" in d
            d.setdefault("key", secrets.token_hex(32))
            for k in ("highest_seq", "tx_seq", "created_at", "updated_at"):
                d.pop(k, None)
            a = Account.from_dict(d)
            a.validate()
        except (ValueError, TypeError) as e:
            raise UsageError("import %s: record %d: %s" % (path, i + 1, e)) from None
        accts.append((a, keyed))
    return accts


async def _find_account(store, number: str):
    """The account as typed, or upper case (DC-09 accounts are hex,
    stored upper case as `add` stores them)."""
    return await store.get_account(number) or await store.get_account(number.upper())


def _account_line(a) -> str:
    prof = "%s+%s" % (a.heartbeat_s or "dflt", "dflt" if a.grace_s is None else a.grace_s)
    return "%-10s %-6s %-10s %-12s %-24s %s" % (
        a.number, a.protocol, a.panel_kind or "-", a.region or "-",
        (a.site_name or "-")[:24], prof if a.supervised else "unsupervised")


async def _accounts(args, cfg) -> int:
    # check everything the operator typed before the store is opened (or made)
    check = _ACCOUNT_CHECKS.get(args.action)
    checked = check(args, cfg) if check is not None else None
    store = await _open_store(cfg, create=args.action in ("add", "import"))
    try:
        await _ACCOUNT_ACTIONS[args.action](store, args, cfg, checked)
    finally:
        await store.close()
    return 0


def _check_add(args, cfg):
    """(the new account, its panel template or None)."""
    new = _new_account(args)
    tmpl = None
    if args.panel_template:
        tmpl = panel_template(cfg, new, args.receiver)
    elif args.receiver:
        raise UsageError("--receiver is an address for the panel template: give "
                         "--panel-template FILE too")
    return new, tmpl


async def _account_add(store, args, cfg, checked) -> None:
    new, tmpl = checked
    if await store.get_account(new.number) is not None:
        raise Failure("account %s already exists" % new.number)
    await store.add_account(new)
    print("account %s added (%s)" % (new.number, new.protocol))
    if new.protocol == "dc09" and not new.key:
        from receiver.accounts import keyless_warning  # noqa: PLC0415

        print("warning: " + keyless_warning(new.number), file=sys.stderr)
    if args.show_key:
        print("key %s" % new.key.hex())
    if tmpl is not None:
        try:
            _write_template(args.panel_template, tmpl)
        except Failure as e:
            raise Failure("%s; the account was added: write the template again "
                          "with: guardline-receiver accounts template %s -o FILE"
                          % (e, new.number)) from None


async def _account_template(store, args, cfg, checked) -> None:
    a = await _find_account(store, args.number)
    if a is None:
        raise Failure("no account %s" % args.number)
    _write_template(args.output, panel_template(cfg, a, args.receiver))


async def _account_list(store, args, cfg, checked) -> None:
    accts = await store.list_accounts()
    if args.json:
        for a in accts:
            print(json.dumps(a.to_dict(), sort_keys=True))
        return
    print("%-10s %-6s %-10s %-12s %-24s %s" % ("ACCOUNT", "PROTO", "KIND", "REGION", "SITE",
                                              "SUPERVISION"))
    for a in accts:
        print(_account_line(a))


async def _account_show(store, args, cfg, checked) -> None:
    a = await _find_account(store, args.number)
    if a is None:
        raise Failure("no account %s" % args.number)
    print(json.dumps(a.to_dict(with_key=args.show_key), indent=2, sort_keys=True))


async def _account_import(store, args, cfg, imported: list) -> None:
    existing = {a.number for a in await store.list_accounts()}
    dup = [a.number for a, _ in imported if a.number in existing]
    if dup and not args.update:
        raise Failure("import: %d account(s) already exist (e.g. %s); use --update"
                      % (len(dup), dup[0]))
    added = updated = 0
    for a, keyed in imported:
        if a.number in existing:
            d = a.to_dict(with_key=True)
            for k in ("number", "highest_seq", "tx_seq", "created_at", "updated_at"):
                d.pop(k)
            if not keyed:
                # an export without keys, edited and imported back:
                # a fresh key here would lock every panel out
                del d["key"]
            await store.update_account(a.number, **d)
            updated += 1
        else:
            await store.add_account(a)
            added += 1
    print("imported %d account(s): %d added, %d updated" % (len(imported), added, updated))
    fresh = [a.number for a, keyed in imported if not keyed and a.number not in existing]
    if fresh:
        print("new keys were generated for %d account(s) (e.g. %s): see them with "
              "accounts show N --show-key" % (len(fresh), fresh[0]))


async def _account_export(store, args, cfg, checked) -> None:
    accts = [a.to_dict(with_key=args.with_keys) for a in await store.list_accounts()]
    text = json.dumps(accts, indent=2, sort_keys=True) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return
    try:
        if args.with_keys:
            _write_private(args.output, text)
        else:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
    except OSError as e:
        raise Failure("cannot write %s: %s" % (args.output, e.strerror or e)) from None
    print("exported %d account(s) to %s" % (len(accts), args.output))


# accounts ACTION: what is checked before the store is opened, and what is done
_ACCOUNT_CHECKS = {"add": _check_add, "import": lambda args, cfg: _read_import(args.file)}
_ACCOUNT_ACTIONS = {"add": _account_add, "template": _account_template,
                    "list": _account_list, "show": _account_show,
                    "import": _account_import, "export": _account_export}


# -- events --------------------------------------------------------------------------------


def _event_json(e) -> str:
    """One event as a JSON line (receiver.records.Event.to_json)."""
    return json.dumps(e.to_json(), sort_keys=True, ensure_ascii=False)


def _event_line(e) -> str:
    return "#%-6d %s %-8s q%d %03d %-12s %s  [%s]" % (
        e.id, _iso(e.received_at), e.account, e.qualifier, e.code, e.event_class,
        e.description, e.peer)


def _after_arg(text: str | None) -> int | None:
    """``--after``: an event id (0 or more; 0 when not given), or None for
    ``latest``."""
    if text is None:
        return 0
    if text == "latest":
        return None
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise UsageError("--after takes an event id (the id of the last event you have, "
                         "0 for all) or 'latest' (only events stored from now on), not %r"
                         % text)
    return n


async def _events(args, cfg) -> int:
    from receiver.store import FEED_MAX_PAGE  # noqa: PLC0415

    since = parse_time(args.since) if args.since else None
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    after = _after_arg(args.after)
    store = await _open_store(cfg)
    try:
        if args.account is not None:
            a = await _find_account(store, args.account)
            if a is not None:
                args.account = a.number
            elif not await store.list_events(account=args.account, limit=1):
                # an empty list would read as "nothing happened there"
                raise Failure("no account %s (and no events stored for it)" % args.account)
        if after is None:  # latest
            newest = await store.last_event(args.account)
            last = newest.id if newest is not None else 0
        else:
            last = after
        printed = 0
        while True:
            # the event feed (Store.events_after), a page at a time
            page = min(args.limit if args.follow else args.limit - printed, FEED_MAX_PAGE)
            if since is None:
                rows = await store.events_after(args.account, last, page)
            else:
                rows = await store.list_events(account=args.account, since=since,
                                               after_id=last, limit=page)
            for e in rows:
                print(_event_json(e) if args.json else _event_line(e), flush=True)
                last = e.id
            printed += len(rows)
            if not args.follow:
                if printed >= args.limit:
                    more(args.limit, "events", "--after %d for the next ones, --since, or "
                          "a larger --limit" % last)
                    break
                if len(rows) < page:
                    break
            elif len(rows) < page:
                await asyncio.sleep(FOLLOW_POLL_S)
    finally:
        await store.close()
    return 0


# -- decode --------------------------------------------------------------------------------


def _decode(args, cfg) -> int:
    from receiver import dc09_decode  # noqa: PLC0415

    try:
        raw = bytes.fromhex(re.sub(r"\s+", "", args.hex))
        added = False
    except ValueError:
        # a DC-09 frame pasted as text, as logs print it
        got = dc09_decode.frame_from_text(args.hex)
        if got is None:
            raise UsageError("not hex, nor a DC-09 frame: %r" % args.hex[:40]) from None
        raw, added = got
    if dc09_decode.looks_like_dc09(raw):
        return _decode_dc09(raw, added, args, cfg)
    key = None
    if args.key:
        try:
            key = bytes.fromhex(args.key)
        except ValueError:
            raise UsageError("--key is not hex") from None
        from protocol.lean import glwire as w  # noqa: PLC0415

        try:
            w.Keys(key)  # the codec's own length rule
        except w.EncodeError as e:
            raise UsageError("--key: %s (this one is %d)" % (e, len(key))) from None
    try:
        from protocol import spec  # noqa: PLC0415
        describe = getattr(spec, "describe", None)
    except ImportError:
        describe = None
    if key is None and len(raw) >= 8:
        key = _key_from_store(cfg, int.from_bytes(raw[4:8], "big"),
                              explicit=bool(args.db or args.config))
    if describe is not None:
        return _decode_described(describe, raw, key)
    return _decode_native(raw, key)


def _decode_described(describe, raw: bytes, key: bytes | None) -> int:
    """protocol/spec.py (the normative construct definition) explains the
    frame; we add the verdicts and the operator's reading of an event."""
    out = describe(raw, key=key)
    out["valid"] = "error" not in out
    out["authenticated"] = ("message" in out) if key is not None else None
    msg = out.get("message")
    if isinstance(msg, dict):
        _annotate_message(msg)
    if key is None and out["valid"]:
        out["note"] = "no key: header only (give --key or an account in --db)"
    print(json.dumps(out, indent=2, sort_keys=True, default=_jsonable))
    if not out["valid"]:
        _say_not_a_frame(out["error"])
    return 0 if out["valid"] else 1


def _say_not_a_frame(error: dict) -> None:
    """decode's line on stderr for bytes that are not a valid frame: the
    JSON's reason, in words."""
    from protocol.header_words import NO_HEADER  # noqa: PLC0415

    # (a DC-09 frame was told apart before: bytes without "GL" are neither)
    what = ("not a Guardline or DC-09 frame" if error["reason_name"] == NO_HEADER
            else "not a valid frame")
    print("guardline-receiver: %s: %s" % (what, error["detail"]), file=sys.stderr)


def _decode_native(raw: bytes, key: bytes | None) -> int:
    """A native frame read with the lean codec (glwire)."""
    from protocol.lean import glwire as w  # noqa: PLC0415

    try:
        frame = w.decode_datagram(raw)
    except w.WireError as e:
        from protocol.header_words import header_problem  # noqa: PLC0415

        problem = header_problem(raw)  # the same reason and words as spec.describe
        error = problem.as_json() if problem is not None else {
            "reason": e.reason, "reason_name": w.NAK_NAMES.get(e.reason, str(e.reason)),
            "detail": str(e)}
        print(json.dumps({"valid": False, "authenticated": None, "length": len(raw),
                          "error": error}, indent=2, sort_keys=True))
        _say_not_a_frame(error)
        return 1
    out = {"valid": True, "version": frame.version, "flags": frame.flags,
           "flag_names": [n for b, n in ((w.FLAG_FROM_RECEIVER, "from_receiver"),
                                         (w.FLAG_BACKUP_PATH, "backup_path"),
                                         (w.FLAG_CLOCK_UNSET, "clock_unset"))
                          if frame.flags & b],
           "account": frame.account, "seq": frame.seq, "timestamp": frame.timestamp,
           "timestamp_iso": _iso(frame.timestamp) if frame.timestamp else None,
           "type": w.MSG_NAMES.get(frame.mtype, frame.mtype), "body_len": frame.body_len,
           "length": len(raw)}
    if key is not None:
        try:
            msg = dict(w.open_frame(w.Keys(key), frame))
            out["authenticated"] = True
            _annotate_message(msg)
            out["message"] = msg
        except w.WireError as e:  # as spec.describe reports it
            out.update(valid=False, authenticated=False, error={
                "reason": e.reason, "reason_name": w.NAK_NAMES.get(e.reason, str(e.reason)),
                "detail": str(e)})
    else:
        out["authenticated"] = None
        out["note"] = "no key: header only (give --key or an account in --db)"
    print(json.dumps(out, indent=2, sort_keys=True))
    if not out["valid"]:
        _say_not_a_frame(out["error"])
    return 0 if out["valid"] else 1


def _decode_dc09(raw: bytes, added: bool, args, cfg) -> int:
    from protocol import dc09  # noqa: PLC0415
    from receiver import dc09_decode  # noqa: PLC0415

    key, source = None, ""
    if args.key:
        key, source = _dc09_key(args.key, args.key_format), "--key"
    elif args.db or args.config or os.path.exists(cfg.db):
        try:
            head = dc09.parse_header(raw, crc_includes_cr=True)
            # a clear message needs no key: the store is not asked
            number = head.account.upper() if head.encrypted else None
        except dc09.Dc09Error:
            number = None
        if number:
            key = _key_from_store(cfg, number, explicit=bool(args.db or args.config)) or None
            source = "stored" if key else ""
    out = dc09_decode.report(raw, key, source)
    if added:
        out["input"] = "text without LF/CR: framed with them to decode"
    print(json.dumps(out, indent=2, sort_keys=True, ensure_ascii=False))
    if not out["valid"]:
        print("guardline-receiver: not a valid DC-09 frame: %s" % out["error"], file=sys.stderr)
    return 0 if out["valid"] else 1


def _annotate_message(msg: dict) -> None:
    from protocol import contactid  # noqa: PLC0415
    from protocol.lean import glwire as w  # noqa: PLC0415

    t = msg.get("type")
    msg["type_name"] = w.MSG_NAMES.get(t, str(t)) if isinstance(t, int) else str(t)
    if "reason" in msg:
        msg["reason_name"] = w.NAK_NAMES.get(msg["reason"])
    if t == w.MSG_EVENT and "code" in msg:
        msg["description"] = contactid.describe(msg["code"], msg["qualifier"],
                                                zone=msg.get("zone"),
                                                partition=msg.get("partition"))
        msg["event_class"] = contactid.event_class(msg["code"])


def _jsonable(o):
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    return str(o)


def _key_from_store(cfg, account: int | str, explicit: bool):
    """The account's key from the store; None when it has no such account,
    or when no store was named and the default one does not exist.  A
    store named with --db/--config must be there (StoreMissing)."""
    from receiver.store import is_url  # noqa: PLC0415

    if not explicit and not is_url(cfg.db) and not os.path.exists(cfg.db):
        return None

    async def get():
        store = await _open_store(cfg)
        try:
            a = await store.get_account(str(account))
            return None if a is None else a.key
        finally:
            await store.close()
    return asyncio.run(get())


# -- panels command (through the running console) ----------------------------------------

# Seconds the CLI waits for the console's answer: the receiver waits up to
# 15 s for the panel's REPLY (receiver.commands.COMMAND_TIMEOUT_S), plus login.
PANEL_COMMAND_HTTP_TIMEOUT_S = 30.0


async def _panel_command(args) -> int:
    """The command runs in the serving process (it holds the panel's TCP
    connection), so the CLI asks the console's JSON API as a named user."""
    import aiohttp  # noqa: PLC0415 - only this command needs a client

    password = os.environ.get("GUARDLINE_CONSOLE_PASSWORD")
    if not password:
        raise UsageError("set GUARDLINE_CONSOLE_PASSWORD to the console password of --by")
    base = args.url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=PANEL_COMMAND_HTTP_TIMEOUT_S)
    try:
        # unsafe: keep the session cookie for an IP-address host (127.0.0.1)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as http:
            async with http.post(base + "/api/login",
                                 json={"name": args.by, "password": password}) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    raise Failure("console login refused: %s" % body.get("error", r.status))
                csrf = body["csrf"]
            async with http.post(base + "/api/accounts/%s/command" % args.account,
                                 json={"command": args.panel_command,
                                       "partition": args.partition},
                                 headers={"X-CSRF-Token": csrf}) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    raise Failure("command refused (%d): %s" % (r.status,
                                                                body.get("error", "")))
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        raise Failure("console %s not reachable: %s" % (base, e or type(e).__name__)) from None
    if args.json:
        print(json.dumps(body))
    else:
        parts = " ".join("%d=%s" % (p["position"], p["state_name"]) for p in body["partitions"])
        print("account=%s command=%s result=%s partitions %s troubles=0x%04x"
              % (body["account"], body["command"], body["result_name"], parts,
                 body["troubles"]))
    return 0 if body["result_name"] == "ok" else 1


# -- argument parsing ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # --config and --db are accepted before or after any subcommand; the
    # subcommands' copies default to SUPPRESS so they never overwrite a
    # value given earlier on the line.
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument("--config", help="receiver.toml (see examples/receiver.toml)")
    top.add_argument("--db", help="SQLite database path or postgresql:// URL (default: "
                                  "from the config, "
                                  "else %s)" % _config.DEFAULT_DB)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="receiver.toml (see examples/receiver.toml)")
    common.add_argument("--db", default=argparse.SUPPRESS,
                        help="SQLite database path or postgresql:// URL")
    p = _Parser(prog="guardline-receiver", description=(__doc__ or "").split("\n")[0],
                parents=[top])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_serve_parser, _accounts_parser, _events_parser):
        add_command(sub, common)
    # alarms, sites, plans, dispositions: the operator's workflow
    from receiver import workflow_cli  # noqa: PLC0415

    workflow_cli.register(sub, common, _load_config, _open_store)
    for add_command in (_panels_parser, _decode_parser):
        add_command(sub, common)
    from receiver import rules_cli  # noqa: PLC0415 - schedules, test, zones, reports

    rules_cli.register(sub, common, rules_cli.CliHelpers(_load_config, _open_store,
                                                         parse_time))
    from receiver.web import admin as web_admin  # noqa: PLC0415 - console users

    web_admin.register(sub, common, _load_config)
    return p


class _Parser(argparse.ArgumentParser):
    """argparse, naming the choices when a command's ACTION is missing
    ("ACTION is required (one of: check, load, list)"); every subcommand's
    parser is of this class (add_subparsers makes them of their parent's)."""

    def error(self, message):
        for a in self._actions:  # argparse has no public accessor for them
            # a subcommand action: its choices map each name to its parser
            if (isinstance(a.choices, dict) and a.metavar
                    and message.endswith("required: %s" % a.metavar)):
                message += " (one of: %s)" % ", ".join(a.choices)
        super().error(message)


# More workers than this is a typo, not a plan: each holds up to ten store
# connections (docs/scale-out.md, "Operating it").
MAX_WORKERS = 64


def _workers_arg(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError("expected a number of processes, 1..%d, got %r"
                                         % (MAX_WORKERS, text))
    return int(text)


def _serve_parser(sub, common) -> None:
    """guardline-receiver serve"""
    s = sub.add_parser("serve", parents=[common], help="run the receiver")
    s.add_argument("--tcp", action="append", metavar="HOST:PORT")
    s.add_argument("--udp", action="append", metavar="HOST:PORT")
    s.add_argument("--dc09-tcp", action="append", metavar="HOST:PORT",
                   help="SIA DC-09 over TCP")
    s.add_argument("--dc09-udp", action="append", metavar="HOST:PORT",
                   help="SIA DC-09 over UDP")
    s.add_argument("--serial", action="append", metavar="URL",
                   help="device or pyserial URL (/dev/ttyS0, socket://h:p, loop://)")
    s.add_argument("--metrics", metavar="HOST:PORT", help="Prometheus /metrics")
    s.add_argument("--web", metavar="HOST:PORT", help="operator console (hook)")
    s.add_argument("--ready-file", metavar="FILE",
                   help="write the bound addresses as JSON here once listening")
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    s.add_argument("--init", action="store_true",
                   help="create a new, empty store if there is none (first start); without "
                   "it a missing store is an error")
    s.add_argument("--event-loop", choices=EVENT_LOOPS, default="auto",
                   help="auto (default): uvloop where installed, else asyncio's own")
    s.add_argument("--workers", type=_workers_arg, default=1, metavar="N",
                   help="run N receiver processes on the same ports (SO_REUSEPORT), one "
                   "PostgreSQL store: every core (default 1; docs/scale-out.md)")
    s.set_defaults(func=cmd_serve)


def _accounts_parser(sub, common) -> None:
    """guardline-receiver accounts add|template|list|show|import|export"""
    a = sub.add_parser("accounts", parents=[common], help="manage accounts")
    asub = a.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = asub.add_parser("add", parents=[common], help="add an account (generates its key)")
    add.add_argument("number")
    add.add_argument("--protocol", default="native", choices=["native", "dc09"])
    add.add_argument("--kind", help="panel kind (door, bank, ...)")
    add.add_argument("--site", help="site name")
    add.add_argument("--address", help="site address")
    add.add_argument("--region", help="routing region")
    add.add_argument("--zones", help='JSON {"1": "front door"} or @file')
    add.add_argument("--partitions", help='JSON {"1": "vault"} or @file')
    add.add_argument("--heartbeat", type=int, metavar="S", help="supervision interval")
    add.add_argument("--grace", type=int, metavar="S", help="supervision grace")
    add.add_argument("--paths", default="1", help="supervised paths, e.g. 1,2")
    add.add_argument("--unsupervised", action="store_true")
    add.add_argument("--test-interval", type=int, metavar="S",
                     help="the panel owes a periodic test (602) this often (s, from 3600)")
    add.add_argument("--test-grace", type=int, metavar="S",
                     help="late by this much, a periodic test is missed (358)")
    add.add_argument("--contacts", help="JSON list or @file")
    add.add_argument("--site-position", metavar="LAT,LON",
                     help="where the site is, decimal degrees (the map; patrols sent to it)")
    add.add_argument("--arrival-radius", type=int, metavar="M",
                     help="a patrol within this many metres of the site is on scene "
                     "(default: [vehicles] arrival_radius_m)")
    add.add_argument("--track-retention-days", type=int, metavar="DAYS",
                     help="days a vehicle unit's track points are kept (default: "
                     "[vehicles] retention_days)")
    add.add_argument("--key", help="use this key instead of generating one (native: hex; "
                     "DC-09: AES-128/192/256 key, none = the line reports unencrypted)")
    add.add_argument("--key-format", choices=["hex", "ascii"], default="hex",
                     help="how --key is written (DC-09: ascii = 16/24/32 characters)")
    add.add_argument("--show-key", action="store_true", help="print the key")
    add.add_argument("--panel-template", metavar="FILE",
                     help="write a panel config template (JSON, mode 0600)")
    add.add_argument("--receiver", action="append", metavar="[tcp/|udp/]HOST:PORT",
                     help="an address panels reach this receiver at, for the template, once "
                     "per path (default: the config's listeners)")
    tp = asub.add_parser("template", parents=[common],
                         help="write an account's panel template again (JSON, mode 0600)")
    tp.add_argument("number")
    tp.add_argument("--output", "-o", metavar="FILE", required=True)
    tp.add_argument("--receiver", action="append", metavar="[tcp/|udp/]HOST:PORT",
                    help="an address panels reach this receiver at, once per path "
                    "(default: the config's listeners)")
    lst = asub.add_parser("list", parents=[common], help="the accounts, one a line (--json)")
    lst.add_argument("--json", action="store_true")
    show = asub.add_parser("show", parents=[common],
                           help="one account's record (its key only with --show-key)")
    show.add_argument("number")
    show.add_argument("--show-key", action="store_true")
    imp = asub.add_parser("import", parents=[common],
                          help="import accounts from JSON (array or one object per line)")
    imp.add_argument("file")
    imp.add_argument("--update", action="store_true", help="update accounts that exist")
    exp = asub.add_parser("export", parents=[common],
                          help="every account as a JSON array (keys only with --with-keys)")
    exp.add_argument("--with-keys", action="store_true")
    exp.add_argument("--output", "-o", metavar="FILE")
    a.set_defaults(func=lambda args: _run_async(_accounts, args))


def _events_parser(sub, common) -> None:
    """guardline-receiver events"""
    e = sub.add_parser("events", parents=[common], help="list stored events")
    e.add_argument("--account")
    e.add_argument("--since", metavar="T", help="Unix seconds, ISO 8601, or 15m / 2h / 1d")
    e.add_argument("--after", metavar="ID",
                   help="only events after event ID (the #id a listing shows; 0: all) or "
                        "'latest': only events stored from now on")
    e.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new events as they are stored")
    e.add_argument("--json", action="store_true", help="one JSON object per line")
    e.add_argument("--limit", type=int, default=1000)
    e.set_defaults(func=lambda args: _run_async(_events, args))


def _panels_parser(sub, common) -> None:
    """guardline-receiver panels command"""
    pn = sub.add_parser("panels", help="act on connected panels")
    pnsub = pn.add_subparsers(dest="action", required=True, metavar="ACTION")
    pc = pnsub.add_parser("command", help="send status/arm/disarm to a panel through the "
                          "running console (password in GUARDLINE_CONSOLE_PASSWORD)")
    pc.add_argument("account")
    pc.add_argument("panel_command", metavar="COMMAND",
                    choices=["status", "arm-away", "arm-stay", "disarm"])
    pc.add_argument("--partition", type=int, default=1)
    pc.add_argument("--by", required=True, help="console user (supervisor or administrator)")
    pc.add_argument("--url", default="http://127.0.0.1:8080",
                    help="the console's base URL (serve --web)")
    pc.add_argument("--json", action="store_true")
    pn.set_defaults(func=lambda args: asyncio.run(_panel_command(args)))


def _decode_parser(sub, common) -> None:
    """guardline-receiver decode"""
    d = sub.add_parser("decode", parents=[common],
                       help="decode a captured frame (native or SIA DC-09, told apart by "
                            "its bytes)")
    d.add_argument("hex", help="the frame as hex; a DC-09 frame may also be given as the "
                               "text a log shows")
    d.add_argument("--key", help="account key; else looked up in the store")
    d.add_argument("--key-format", choices=["hex", "ascii"], default="hex",
                   help="how --key is written for a DC-09 frame (as for accounts add)")
    d.set_defaults(func=lambda args: _decode(args, _load_config(args)))


def _run_async(fn, args) -> int:
    cfg = _load_config(args)
    return asyncio.run(fn(args, cfg))


def _store_missing_message(args, e) -> str:
    if args.command == "serve":
        how = "start with --init to create a new, empty store there"
    else:
        how = ("nothing was created.  Name the receiver's store with --db or --config "
               "(`serve --init`, `accounts add` and `accounts import` make a new one)")
    try:
        origin = _store_origin(args, _load_config(args))
    except _config.ConfigError:
        origin = "--db/--config"
    return "guardline-receiver: %s (%s): %s" % (e, origin, how)


def main(argv=None) -> int:
    from receiver.store import StoreMissing  # noqa: PLC0415

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":  # serve logs in logfmt (cmd_serve)
        logfmt.setup_messages("guardline-receiver")
    try:
        return args.func(args)
    except StoreMissing as e:
        print(_store_missing_message(args, e), file=sys.stderr)
        return 1
    except _config.ConfigError as e:
        print("guardline-receiver: configuration refused: %s" % e, file=sys.stderr)
        return 2
    except UsageError as e:
        print("guardline-receiver: %s" % e, file=sys.stderr)
        return 2
    except Failure as e:
        print("guardline-receiver: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
