"""Provisioning a panel: its config from the receiver's account template,
user codes, and the checks an installer runs before building.

    guardline-panel new --kind bank --from-template panel-1001.json -o site.json
    guardline-panel user add site.json --id 1 --name manager --authority master
    guardline-panel check site.json

What this module keeps true:

- A file that holds a secret (a panel config holds the account key, the
  code salt, the code hashes and maybe a Wi-Fi password) is created with
  mode 0600 before a byte of it is written (``write_private``: a temporary
  file opened 0600 in the same directory, then renamed over the target), so
  there is no moment where it is readable by others.
- Keys are never printed unless the installer asks (``--show-key``).
- A user code is never stored: only ``sha256(code_salt || code)``, exactly
  as the panel's ``users.hash_code`` computes it.  A new config gets a
  fresh random ``code_salt``; the example configs' users are not carried
  over, since their hashes are of published codes under the example salt.
- The validator is the firmware's own (``firmware/device/config.py``);
  this module only adds where in the file an error is (line numbers), a
  "did you mean" for typos, and warnings for things that are valid but
  almost certainly wrong on a real site (placeholder key or salt, no users).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
import secrets
import tempfile
import time

from firmware import REPO
from firmware.device import config as _config
from firmware.device import geo as _geo

EXAMPLES_DIR = os.path.join(REPO, "examples")

# The examples' placeholder secrets (docs/simulator.md): valid, public,
# and therefore never acceptable on a real panel.
PLACEHOLDER_KEY = bytes(range(32)).hex()
PLACEHOLDER_SALT = "5a17c0de5a17c0de5a17c0de5a17c0de"

# A fresh code salt: 16 random bytes (config accepts 8..64).
SALT_BYTES = 16
# A fresh account key when neither a template nor --key gives one: 32
# bytes, as the receiver generates (receiver/cli.py accounts add).
KEY_BYTES = 32
# A DC-09 line's AES key: 128, 192 or 256 bits (SIA DC-09 5.4).
DC09_KEY_BYTES = (16, 24, 32)
# Keypad codes: digits only (the keypad/reader line protocol sends digits),
# 4 digits at least (EN 50131-1 8.3.1: at least 10,000 combinations),
# 8 at most (what a keypad buffer takes).
CODE_RE = re.compile(r"^[0-9]{4,8}$")

TEMPLATE_FIELDS = ("account", "key", "protocol", "receivers", "heartbeat_s", "site_name",
                   "zones", "partitions", "supervision")
# Addresses a receiver listens on that no panel can send to: a template
# made from a receiver config listening on all addresses carries them.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
# The panel's timing that sets how often each reporting path is heard
# (reporter.py: the active path every heartbeat_s, the standby path every
# backup_heartbeat_s), by the receiver's path number.
PATH_HEARTBEAT = {1: "heartbeat_s", 2: "backup_heartbeat_s"}
PATH_NAMES = {1: "primary", 2: "backup"}


class ProvisionError(Exception):
    """A refused input, with a message naming the field at fault."""


# -- files ------------------------------------------------------------------------


def write_private(path: str, text: str) -> None:
    """Write `text` to `path`, readable by the owner only, atomically."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=d)
    try:
        if hasattr(os, "fchmod"):  # POSIX; on Windows the file's ACL is the user's
            os.fchmod(fd, 0o600)  # mkstemp makes it 0600 already; a umask cannot widen it
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def dump_config(doc: dict) -> str:
    return json.dumps(doc, indent=1) + "\n"


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ProvisionError("%s: cannot read (%s)" % (path, e.strerror or e)) from None
    except ValueError as e:
        raise ProvisionError("%s: not valid JSON (%s)" % (path, e)) from None


def is_private(path: str) -> bool:
    return os.stat(path).st_mode & 0o077 == 0


# -- the receiver's template --------------------------------------------------------


def parse_receiver(text: str, what: str = "--receiver") -> dict:
    """``[tcp/|udp/]HOST:PORT`` (as guardline-receiver takes it) to a
    config path object."""
    transport, _, addr = text.rpartition("/") if "/" in text else ("tcp", "", text)
    if transport not in ("tcp", "udp"):
        raise ProvisionError("%s %r: transport must be tcp or udp" % (what, text))
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise ProvisionError("%s %r: expected HOST:PORT" % (what, text))
    try:
        p = int(port)
    except ValueError:
        p = 0
    if not 1 <= p <= 65535:
        raise ProvisionError("%s %r: port must be 1..65535" % (what, text))
    return {"type": transport, "host": host.strip("[]"), "port": p}


def load_template(path: str) -> dict:
    """The JSON that ``guardline-receiver accounts add --panel-template``
    writes; checked field by field."""
    t = read_json(path)
    if not isinstance(t, dict):
        raise ProvisionError("%s: expected a JSON object" % path)
    unknown = sorted(set(t) - set(TEMPLATE_FIELDS))
    if unknown:
        raise ProvisionError("%s: %s: unknown field (known: %s)"
                             % (path, unknown[0], ", ".join(TEMPLATE_FIELDS)))
    proto = t.get("protocol", "native")
    if proto not in _config.PROTOCOLS:
        raise ProvisionError("%s: protocol: %r is not one of %s"
                             % (path, proto, ", ".join(_config.PROTOCOLS)))
    acct, key = _template_account(t, proto, path)
    paths = _template_receivers(t, path)
    hb = t.get("heartbeat_s")
    if hb is not None and (isinstance(hb, bool) or not isinstance(hb, int) or hb <= 0):
        raise ProvisionError("%s: heartbeat_s: expected a number of seconds, got %r"
                             % (path, hb))
    supervision = supervision_of(t, path) if "supervision" in t else None
    return {"account": acct, "key": key.hex(), "protocol": proto, "receivers": paths,
            "heartbeat_s": hb, "site_name": t.get("site_name") or "",
            "zones": _template_names(t, "zones", path),
            "partitions": _template_names(t, "partitions", path),
            "supervision": supervision}


def _template_account(t: dict, proto: str, path: str) -> tuple[int | str, bytes]:
    """A template's account and key, checked for its protocol."""
    acct = t.get("account")
    if proto == "dc09":
        # SIA DC-09 5.5.1.6: the account is 3..16 hex digits, a string (the
        # receiver stores it upper case); the key is the AES key's bytes as
        # hex whatever --key-format the operator typed, or "" for a line
        # that reports in clear (docs/dc09.md, "DC-09 accounts").
        if not (isinstance(acct, str) and 3 <= len(acct) <= 16
                and all(c in "0123456789abcdefABCDEF" for c in acct)):
            raise ProvisionError("%s: account: expected 3..16 hex digits (a DC-09 "
                                 "account), got %r" % (path, acct))
        acct = acct.upper()
        try:
            key = bytes.fromhex(t.get("key") or "")
        except (TypeError, ValueError):
            key = b"?"
        if len(key) not in (0,) + DC09_KEY_BYTES:
            raise ProvisionError("%s: key: expected an AES-128/192/256 key (32/48/64 hex "
                                 "digits) or none" % path)
    else:
        if isinstance(acct, bool) or not isinstance(acct, int) or not 1 <= acct <= 0xFFFFFFFF:
            raise ProvisionError("%s: account: expected an integer 1..4294967295, got %r"
                                 % (path, acct))
        try:
            key = bytes.fromhex(t.get("key") or "")
        except (TypeError, ValueError):
            key = b""
        if not 16 <= len(key) <= 64:
            raise ProvisionError("%s: key: expected 16..64 bytes of hex" % path)
    return acct, key


def _template_receivers(t: dict, path: str) -> list[dict]:
    """A template's receiver addresses, as paths of the panel config."""
    rx = t.get("receivers")
    if rx is None:
        rx = []
    if not isinstance(rx, list):
        raise ProvisionError("%s: receivers: expected a list of {\"transport\", \"host\", "
                             "\"port\"}" % path)
    # An empty list is not refused here: --receiver may supply the
    # addresses (new_config says what is missing when nothing does).
    paths = []
    for i, r in enumerate(rx):
        if not isinstance(r, dict):
            raise ProvisionError("%s: receivers[%d]: expected an object" % (path, i))
        paths.append(parse_receiver("%s/%s:%s" % (r.get("transport", "tcp"), r.get("host"),
                                                  r.get("port")),
                                    "%s: receivers[%d]" % (path, i)))
    return paths


def _template_names(t: dict, field: str, path: str) -> dict[int, str]:
    """A template's zone or partition names: {number: name}."""
    m = t.get(field) or {}
    if not isinstance(m, dict):
        raise ProvisionError("%s: %s: expected an object {\"number\": \"name\"}"
                             % (path, field))
    names = {}
    for k, v in m.items():
        if not str(k).isdigit() or not isinstance(v, str):
            raise ProvisionError("%s: %s[%r]: expected \"number\": \"name\""
                                 % (path, field, k))
        names[int(k)] = v
    return names


def supervision_of(doc: dict, where: str) -> dict:
    """What the receiver supervises, per reporting path: ``{path: {"heartbeat_s": S,
    "grace_s": G}}`` (a path missing from it is not supervised; ``{}``: the
    account is not supervised at all).

    From a template's ``"supervision"`` field as the receiver writes it
    (receiver/cli.py panel_template, docs/receiver.md "Panel templates"):
    ``[{"path": 1, "heartbeat_s": 60, "grace_s": 30}, {"path": 2, ...}]``,
    ``[]`` for an unsupervised account; or from an account record as
    ``guardline-receiver accounts show N --json`` prints it (``heartbeat_s``,
    ``grace_s``, ``supervised_paths``, ``supervised``; a ``heartbeat_s`` of
    null there is the receiver's default, which the record does not say:
    None)."""
    if "supervised_paths" in doc:  # an account record
        if doc.get("supervised") is False:
            return {}
        sup = [{"path": p, "heartbeat_s": doc.get("heartbeat_s"),
                "grace_s": doc.get("grace_s")} for p in doc.get("supervised_paths") or []]
    else:
        sup = doc.get("supervision")
    if not isinstance(sup, list):
        raise ProvisionError("%s: supervision: expected a list of {\"path\": 1 or 2, "
                             "\"heartbeat_s\": S, \"grace_s\": G}" % where)
    out: dict = {}
    for i, v in enumerate(sup):
        here = "%s: supervision[%d]" % (where, i)
        if not isinstance(v, dict) or set(v) - {"path", "heartbeat_s", "grace_s"}:
            raise ProvisionError("%s: expected {\"path\": 1 or 2, \"heartbeat_s\": S, "
                                 "\"grace_s\": G}" % here)
        if v.get("path") not in PATH_HEARTBEAT or isinstance(v.get("path"), bool):
            raise ProvisionError("%s.path: a path is 1 (primary) or 2 (backup), got %r"
                                 % (here, v.get("path")))
        for f in ("heartbeat_s", "grace_s"):
            x = v.get(f)
            if x is not None and (isinstance(x, bool) or not isinstance(x, int) or x < 0
                                  or (f == "heartbeat_s" and x == 0)):
                raise ProvisionError("%s.%s: expected seconds, got %r" % (here, f, x))
        out[v["path"]] = {"heartbeat_s": v.get("heartbeat_s"), "grace_s": v.get("grace_s")}
    return out


def path_label(p: int) -> str:
    return "%s path (%d)" % (PATH_NAMES.get(p, "path"), p)


def supervision_mismatches(timings: dict, supervision: dict | None,
                           heartbeat_s: int | None = None) -> list[tuple[str, str]]:
    """[(timing field, why)] for each path the panel would heartbeat less
    often than the receiver supervises it: the receiver would report that
    path silent (350/354) over and over.  `supervision` as supervision_of
    returns it; None (a template that does not say which paths) compares
    the primary with `heartbeat_s`, the receiver's interval for the account,
    and the backup too when it is heard less often than that (the receiver
    may supervise it: accounts add --paths 1,2)."""
    out = []
    if supervision is None:
        if heartbeat_s is None:
            return out
        supervision = {1: {"heartbeat_s": heartbeat_s, "grace_s": None}}
        if timings.get(PATH_HEARTBEAT[2], 0) > heartbeat_s:
            out.append((PATH_HEARTBEAT[2], "%d s, but the receiver's interval for the "
                        "account is %d s and the template does not say whether it "
                        "supervises the backup path (2): if it does, it reports that path "
                        "silent; set it to at most %d" % (timings[PATH_HEARTBEAT[2]],
                                                          heartbeat_s, heartbeat_s)))
    for p, prof in sorted(supervision.items()):
        want = prof.get("heartbeat_s")
        field = PATH_HEARTBEAT[p]
        have = timings.get(field)
        if want is None or have is None or have <= want:
            continue
        grace = prof.get("grace_s")
        out.append((field, "%d s, but the receiver supervises the %s at %d s%s: it would "
                    "report the path silent%s; set it to at most %d" % (
                        have, path_label(p), want,
                        " + %d s grace" % grace if grace is not None else "",
                        " every %d s" % (want + grace) if grace is not None
                        and have > want + grace else " whenever one heartbeat is lost",
                        want)))
    return out


# -- a new config ----------------------------------------------------------------------

# Words in a zone's name that say what it is (the receiver's zone names are
# what the central station's operators read; the installer confirms each
# guess, `new` prints them).  First match wins.
TYPE_WORDS = (
    (("hold-up", "holdup", "hold up", "teller button"), "holdup"),
    (("panic", "pa button", "emergency"), "panic"),
    (("smoke", "heat", "fire", "flame"), "fire"),
    (("seismic", "vibration"), "seismic"),
    (("tamper",), "tamper"),
    (("bolt",), "bolt"),
    (("foil", "safe door", "cabinet"), "24h"),
    (("pir", "motion", "interior"), "follower"),
    (("glass", "window", "shock"), "instant"),
    (("door", "entrance", "entry"), "entry_exit"),
)


def guess_zone_type(name: str, kind: str, example_type: str | None) -> tuple[str, str]:
    """(type, why) for a zone the template names but does not type."""
    low = name.lower()
    for words, zt in TYPE_WORDS:
        for w in words:
            if w in low:
                if zt == "entry_exit" and kind == "door" and example_type == "door":
                    return "door", "name %r, door panel" % w
                if zt == "bolt" and kind != "door":
                    continue
                return zt, "name contains %r" % w
    if example_type and not (kind == "bank" and example_type in ("door", "bolt")):
        return example_type, "the example's zone with that number"
    return "instant", "default"


EXAMPLE_OF_KIND = {"vehicle": "van"}  # examples/van.json: a cash-in-transit van


def base_config(kind: str) -> dict:
    if kind not in _config.KINDS:
        raise ProvisionError("--kind: %r is not one of %s" % (kind, ", ".join(_config.KINDS)))
    path = os.path.join(EXAMPLES_DIR, "%s.json" % EXAMPLE_OF_KIND.get(kind, kind))
    if not os.path.exists(path):
        raise ProvisionError("no example config for %s panels at %s" % (kind, path))
    return read_json(path)


def local_utc_offset_min(when: float | None = None) -> int:
    """This computer's offset from UTC now, in minutes (the installer's
    laptop is on site: its time zone is the site's)."""
    lt = time.localtime(when)
    return int(lt.tm_gmtoff // 60) if lt.tm_gmtoff is not None else 0


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[^0-9a-z]+", name.lower()) if len(w) >= 3}


def guess_partition(zone_name: str, partitions: dict) -> tuple[int | None, str]:
    """(partition id, why) for a zone the template names: the partition
    whose name shares the most words with the zone's ("teller 1 hold-up"
    -> "teller line", "lobby PIR" -> "lobby"); (None, why) when no single
    partition does."""
    zw = _words(zone_name)
    scores = {pid: len(zw & _words(pname)) for pid, pname in partitions.items()}
    best = max(scores.values(), default=0)
    top = [pid for pid, n in scores.items() if n == best]
    if best and len(top) == 1:
        return top[0], "name shares %r with partition %d %r" % (
            sorted(zw & _words(partitions[top[0]]))[0], top[0], partitions[top[0]])
    if len(partitions) == 1:
        return next(iter(partitions)), "the only partition"
    return None, "no partition's name is in the zone's name"


def _wildcard(paths: list, source: str) -> None:
    for i, p in enumerate(paths[:2]):
        if p["host"] in WILDCARD_HOSTS:
            raise ProvisionError(
                "%s: the %s receiver address is %s:%d, the address the receiver listens "
                "on, not one a panel can reach: give --receiver [tcp/|udp/]HOST:PORT with "
                "the receiver's address as the site sees it" % (
                    source, PATH_NAMES[i + 1], p["host"] or "*", p["port"]))


def new_config(kind: str, template: dict | None = None, account: int | None = None,
               key: str | None = None, receivers: list | None = None,
               name: str | None = None, heartbeat_s: int | None = None,
               wifi: dict | None = None,
               utc_offset_min: int | None = None) -> tuple[dict, list[str]]:
    """A starting config for a site; returns (doc, notes for the installer).

    The example for `kind` gives the structure and timings; the template
    (or the options, which win over it) gives account, key, receivers,
    site name, heartbeat, zone and partition names.  Each path's heartbeat
    is lined up with what the receiver supervises (the template's
    "supervision"; an older template's heartbeat_s for both paths).  Users
    are left empty: add them with `user add`, under the new salt."""
    base = base_config(kind)
    doc = copy.deepcopy(base)
    notes = []
    t = template or {}
    if t.get("protocol") == "dc09":
        _dc09_identity(doc, t, account, key, notes)
    else:
        _native_identity(doc, t, account, key, notes)
    doc["code_salt"] = secrets.token_bytes(SALT_BYTES).hex()
    _receivers(doc, t, template is not None, receivers, notes)
    if name or t.get("site_name"):
        doc["name"] = _fit(name or t["site_name"])
    _heartbeats(doc, t, template is not None, heartbeat_s, notes)
    _utc_offset(doc, utc_offset_min, notes)
    _rooms(doc, base, t, kind, notes)
    doc["users"] = []
    if wifi:
        doc.setdefault("board", {})["wifi"] = wifi
    doc["comment"] = ("Made by guardline-panel new on %s from the %s example%s. Add users "
                      "with: guardline-panel user add THIS_FILE ..." % (
                          time.strftime("%Y-%m-%d"), kind,
                          " and the receiver's template for account %s" % account_label(doc)
                          if template else ""))
    notes.append("no users yet: add them with guardline-panel user add")
    return doc, notes


def _receivers(doc: dict, t: dict, from_template: bool, receivers: list | None,
               notes: list[str]) -> None:
    """The reporting paths: --receiver, else the template's addresses."""
    if receivers:
        paths = list(receivers)
        _wildcard(paths, "--receiver")
    else:
        paths = list(t.get("receivers") or [])
        if from_template and not paths:
            raise ProvisionError("the receiver's template has no receiver address (its "
                                 "config has no listener for this protocol): give "
                                 "--receiver [tcp/|udp/]HOST:PORT (twice: primary, backup)")
        _wildcard(paths, "the receiver's template")
    if not paths:
        raise ProvisionError("no receiver address: give --from-template or --receiver")
    if len(paths) > 2:
        notes.append("the panel has two reporting paths: receivers after the second "
                     "(%s) are not used" % ", ".join("%s:%d" % (p["host"], p["port"])
                                                     for p in paths[2:]))
    doc["receiver"] = {"primary": paths[0], "backup": paths[1] if len(paths) > 1 else None}
    if doc["receiver"]["backup"] is None:
        del doc["receiver"]["backup"]
        notes.append("one receiver address only: the panel has no backup path")


def _utc_offset(doc: dict, utc_offset_min: int | None, notes: list[str]) -> None:
    """The panel's local time: --utc-offset, else this computer's zone now."""
    off = local_utc_offset_min() if utc_offset_min is None else utc_offset_min
    lo, hi = -720, 840  # config.py: UTC-12 .. UTC+14
    if not lo <= off <= hi:
        raise ProvisionError("--utc-offset: %s minutes is outside %d..%d" % (off, lo, hi))
    doc["utc_offset_min"] = off
    notes.append("utc_offset_min %d (UTC%s%02d:%02d, %s): the panel's local time for time "
                 "locks; --utc-offset MIN for another" % (
                     off, "+" if off >= 0 else "-", abs(off) // 60, abs(off) % 60,
                     "this computer's time zone now" if utc_offset_min is None
                     else "--utc-offset"))


def _rooms(doc: dict, base: dict, t: dict, kind: str, notes: list[str]) -> None:
    """The template's partitions and zones over the example's: types and
    partitions guessed from the names, each guess noted for a check."""
    if t.get("partitions"):
        doc["partitions"] = [{"id": pid, "name": _fit(pname)}
                             for pid, pname in sorted(t["partitions"].items())]
        locks = [p["id"] for p in base["partitions"] if "time_lock" in p]
        if locks:
            notes.append("partitions are the receiver's: no time lock is set (the "
                         "example had one on partition %s); add \"time_lock\" where the "
                         "site needs one" % locks[0])
    pids = [p["id"] for p in doc["partitions"]]
    if not t.get("zones"):
        return
    by_id = {z["id"]: z for z in base["zones"]}
    zones = []
    for zid, zname in sorted(t["zones"].items()):
        ex = by_id.get(zid, {})
        zt, why = guess_zone_type(zname, kind, ex.get("type"))
        if t.get("partitions"):
            # the example's partition numbers mean other rooms: by name
            part, pwhy = guess_partition(zname, t["partitions"])
            if part is None:
                part, pwhy = pids[0], pwhy + ": the first partition"
        elif ex.get("partition") in pids:
            part, pwhy = ex["partition"], "the example's zone with that number"
        else:
            part, pwhy = pids[0], "the first partition"
        zones.append({"id": zid, "name": _fit(zname), "type": zt, "partition": part})
        notes.append("zone %d %r: type %s (%s), partition %d (%s): CHECK" % (
            zid, zname, zt, why, part, pwhy))
    doc["zones"] = zones


def _heartbeats(doc: dict, t: dict, from_template: bool, heartbeat_s: int | None,
                notes: list) -> None:
    """Each path's heartbeat (timings.heartbeat_s for the primary,
    backup_heartbeat_s for the backup) no longer than the receiver
    supervises that path: a longer one makes the receiver report the path
    silent (350/354) over and over."""
    tim = doc.setdefault("timings", {})
    lo, hi = _config.TIMINGS["heartbeat_s"][1:]
    sup = t.get("supervision")  # {path: {"heartbeat_s", "grace_s"}}, or None: not said
    said = sup is not None
    if sup is None and t.get("heartbeat_s") is not None:
        # an older template: the receiver's interval for the account, paths
        # not said: heard that often on both, the backup may be supervised
        sup = {p: {"heartbeat_s": t["heartbeat_s"], "grace_s": None} for p in PATH_HEARTBEAT}
    for p, field in sorted(PATH_HEARTBEAT.items()):
        want = (sup or {}).get(p, {}).get("heartbeat_s")
        if p == 1 and heartbeat_s is not None:
            if want is not None and heartbeat_s > want:
                raise ProvisionError(
                    "--heartbeat %d: the receiver supervises the %s at %d s: the panel must "
                    "heartbeat at least that often (--heartbeat %d or less)"
                    % (heartbeat_s, path_label(p), want, want))
            value, why = heartbeat_s, "--heartbeat"
        elif want is not None and not said:
            value, why = want, ("the receiver's interval for the account; the template does "
                                "not say whether it supervises the %s" % path_label(p))
        elif want is not None:
            grace = (sup or {})[p].get("grace_s")
            value, why = want, "the receiver supervises the %s at %d s%s" % (
                path_label(p), want, "" if grace is None else " + %d s grace" % grace)
        elif p == 1 and t.get("heartbeat_s") is not None:
            value, why = t["heartbeat_s"], ("the template's; the receiver does not supervise "
                                            "the %s" % path_label(p))
        else:
            value = tim.get(field, _config.TIMINGS[field][0])
            why = ("the example's; the receiver does not supervise the %s" % path_label(p)
                   if sup is not None else
                   "the example's; the receiver's supervision is not known: it must be at "
                   "most what the receiver expects (accounts add --heartbeat --paths)")
        if not lo <= value <= hi:
            raise ProvisionError("%s: %s s is out of the panel's range %d..%d (%s)"
                                 % (field, value, lo, hi, why))
        tim[field] = value
        if p == 2 and "backup" not in doc["receiver"]:
            continue
        notes.append("%s %d s (%s)" % (field, value, why))


def _native_identity(doc: dict, t: dict, account, key, notes: list) -> None:
    """Account and key of a panel speaking Guardline's native protocol."""
    doc["account"] = account if account is not None else t.get("account")
    if doc["account"] is None:
        raise ProvisionError("no account: give --from-template or --account")
    k = key or t.get("key")
    if key:
        try:
            if not 16 <= len(bytes.fromhex(key)) <= 64:
                raise ValueError
        except ValueError:
            raise ProvisionError("--key: expected 16..64 bytes of hex") from None
    if not k:
        k = secrets.token_bytes(KEY_BYTES).hex()
        notes.append("a new key was generated: the receiver must get the same one "
                     "(guardline-receiver accounts add %s --key ...; see it with "
                     "--show-key)" % doc["account"])
    doc["key"] = k


def _dc09_identity(doc: dict, t: dict, account, key, notes: list) -> None:
    """The "dc09" block of a panel reporting in SIA DC-09 (docs/dc09.md,
    "Panels reporting in DC-09"), from the receiver's DC-09 template.

    The native account and key are dropped: the panel does not use them,
    and the example's are public placeholders.  The key is written as hex
    (the template holds the key's bytes as hex even when the operator
    typed it as ASCII), so "key_format" is "hex" and the bytes are the
    receiver's.  Line "0" and no receiver number: the receiver does not
    identify the account by them (docs/dc09.md), it echoes them."""
    if account is not None:
        raise ProvisionError("--account: a DC-09 account comes from the template (%s); "
                             "it is hex digits, not a native account number" % t["account"])
    k = t.get("key") or ""
    if key:
        try:
            if len(bytes.fromhex(key)) not in DC09_KEY_BYTES:
                raise ValueError
        except ValueError:
            raise ProvisionError("--key: a DC-09 key is 32/48/64 hex digits "
                                 "(AES-128/192/256)") from None
        k = key
        notes.append("--key overrides the template's: the receiver's account %s must have "
                     "the same key, or it rejects every message" % t["account"])
    doc.pop("account", None)
    doc.pop("key", None)
    doc["protocol"] = "dc09"
    doc["dc09"] = {"account": t["account"], "key_format": "hex", "line": "0"}
    if k:
        doc["dc09"]["key"] = k.lower()
    else:
        notes.append("DC-09 account %s has no key at the receiver: the panel reports in "
                     "clear (anyone on the path could forge a message); give the account a "
                     "key at the receiver and --from-template again" % t["account"])
    notes.append("dc09: line 0, no receiver number: set \"line\" and \"receiver_no\" if "
                 "the central station asks for them")


def account_label(doc: dict) -> str:
    """The account the receiver files the panel's events under: the DC-09
    account (hex) for a DC-09 panel, else the native number."""
    if doc.get("protocol") == "dc09" and isinstance(doc.get("dc09"), dict):
        return str(doc["dc09"].get("account"))
    return str(doc.get("account"))


def _fit(name: str) -> str:
    """A name cut to what the panel takes (config.MAX_NAME bytes)."""
    while len(name.encode("utf-8")) > _config.MAX_NAME:
        name = name[:-1]
    return name


# -- users -------------------------------------------------------------------------------


def hash_code(salt_hex: str, code: str) -> str:
    """The config's code_hash: sha256(salt || code), as users.hash_code."""
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        raise ProvisionError("--salt %r: the config's code_salt, hex digits" % salt_hex) \
            from None
    if not CODE_RE.match(code):
        raise ProvisionError("code: 4 to 8 digits")
    return hashlib.sha256(salt + code.encode()).hexdigest()


def weak_code(code: str) -> str | None:
    """Why a code is too easy to guess, or None."""
    if len(set(code)) == 1:
        return "all digits the same"
    steps = {(int(b) - int(a)) % 10 for a, b in zip(code, code[1:])}
    if steps in ({1}, {9}):
        return "a run of consecutive digits"
    return None


def add_user(doc: dict, uid: int, name: str, code: str, authority: str = "user",
             partitions: list | None = None, duress: bool = False,
             allow_weak: bool = False) -> dict:
    if not CODE_RE.match(code):
        raise ProvisionError("code: 4 to 8 digits")
    why = weak_code(code)
    if why and not allow_weak:
        raise ProvisionError("code: too easy to guess (%s); choose another (or "
                             "--allow-weak)" % why)
    if authority not in _config.AUTHORITIES:
        raise ProvisionError("authority: %r is not one of %s"
                             % (authority, ", ".join(_config.AUTHORITIES)))
    salt = doc.get("code_salt")
    try:
        if not isinstance(salt, str):
            raise ValueError(salt)
        bytes.fromhex(salt)
    except ValueError:
        raise ProvisionError("code_salt: the config has no valid salt") from None
    users = doc.setdefault("users", [])
    if any(u.get("id") == uid for u in users):
        raise ProvisionError("users: id %d exists (remove it first)" % uid)
    h = hash_code(salt, code)
    for u in users:
        if u.get("code_hash") == h:
            # The panel would take the code as whichever user comes first.
            raise ProvisionError("code: user %s has the same code" % u.get("id"))
    pids = [p.get("id") for p in doc.get("partitions", []) if isinstance(p, dict)]
    for p in partitions or []:
        if p not in pids:
            raise ProvisionError("partitions: %s is not a configured partition id" % p)
    u = {"id": uid, "name": _fit(name), "code_hash": h, "authority": authority}
    if partitions:
        u["partitions"] = list(partitions)
    if duress:
        u["duress"] = True
    users.append(u)
    return u


def remove_user(doc: dict, uid: int) -> None:
    users = doc.get("users", [])
    keep = [u for u in users if u.get("id") != uid]
    if len(keep) == len(users):
        raise ProvisionError("users: no user %d" % uid)
    doc["users"] = keep


# -- check: where an error is, and what was probably meant ----------------------------------


def locate(text: str) -> dict[str, int]:
    """Line number (1-based) of every value's key in a JSON text, by the
    validator's path spelling (``zones[3].type``, ``receiver.primary``).
    An unparsable text gives {} (json.load reports its own position)."""
    lines: dict[str, int] = {}
    pos = [0]
    n = len(text)

    def ws():
        while pos[0] < n and text[pos[0]] in " \t\r\n":
            pos[0] += 1

    def line():
        return text.count("\n", 0, pos[0]) + 1

    def string():
        i = pos[0] + 1
        out = []
        while text[i] != '"':
            if text[i] == "\\":
                out.append(text[i:i + 2])
                i += 2
            else:
                out.append(text[i])
                i += 1
        pos[0] = i + 1
        return json.loads('"' + "".join(out) + '"')

    def value(path):
        ws()
        c = text[pos[0]]
        if c == "{":
            pos[0] += 1
            ws()
            if text[pos[0]] == "}":
                pos[0] += 1
                return
            while True:
                ws()
                at = line()
                k = string()
                p = path + "." + k if path else k
                lines.setdefault(p, at)
                ws()
                pos[0] += 1  # ':'
                value(p)
                ws()
                c = text[pos[0]]
                pos[0] += 1
                if c == "}":
                    return
        elif c == "[":
            pos[0] += 1
            ws()
            if text[pos[0]] == "]":
                pos[0] += 1
                return
            i = 0
            while True:
                ws()
                p = "%s[%d]" % (path, i)
                lines.setdefault(p, line())
                value(p)
                ws()
                c = text[pos[0]]
                pos[0] += 1
                if c == "]":
                    return
                i += 1
        elif c == '"':
            string()
        else:
            m = re.compile(r"-?[0-9.eE+\-]+|true|false|null").match(text, pos[0])
            if m is None:  # not JSON: json.loads below says where
                raise ValueError("unexpected %r" % text[pos[0]:pos[0] + 1])
            pos[0] = m.end()

    try:
        json.loads(text)
        value("")
    except (ValueError, IndexError, AttributeError):
        return {}
    return lines


def _parent(path: str) -> str:
    if path.endswith("]"):
        return path[:path.rindex("[")]
    return path.rsplit(".", 1)[0] if "." in path else ""


def hint(error: str) -> str:
    """A "did you mean" for a choice or an unknown field, or ""."""
    m = re.search(r"'([^']*)' is not one of (.*)$", error)
    if m:
        opts = [o.strip() for o in m.group(2).split(",")]
        close = difflib.get_close_matches(m.group(1), opts, 1, 0.6)
        return " (did you mean '%s'?)" % close[0] if close else ""
    m = re.search(r"^(.*?): unknown (?:field|timing) \(known: (.*)\)$", error)
    if m:
        name = re.split(r"[.\]]", m.group(1))[-1]
        opts = [o.strip() for o in m.group(2).split(",")]
        close = difflib.get_close_matches(name, opts, 1, 0.6)
        return " (did you mean '%s'?)" % close[0] if close else ""
    return ""


# A vehicle's shapes farther apart than this: one of them is most likely
# written [latitude, longitude] (the config's order is GeoJSON's,
# [longitude, latitude]; both orders are valid numbers near the equator
# and in Europe's longitudes).
FAR_KM = 100


def _crossing_edges(pts: list) -> tuple[int, int] | None:
    """The first two edges (by their first point's index) of a ring of
    (lat, lon) udeg that cross each other, or None.  Exact (integers)."""
    n = len(pts)
    xy = [(_geo.dlon(p[1], pts[0][1]), p[0]) for p in pts]

    def side(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (v > 0) - (v < 0)

    for i in range(n):
        a, b = xy[i], xy[(i + 1) % n]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # neighbours: they share point 0
            c, d = xy[j], xy[(j + 1) % n]
            if side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0:
                return i, j
    return None


def vehicle_warnings(v: dict) -> list[str]:
    """A valid "vehicle" section (vehicle_config.validate's) that is not
    what the installer drew: a geofence whose edges cross, shapes
    hundreds of kilometres apart (a point written [latitude, longitude]).
    Distances on the sphere (gpsreplay.haversine_m) between vertices: a
    zone is measured to the route's nearest point of its line."""
    from firmware.gpsreplay import haversine_m  # noqa: PLC0415 - gpxpy only for a vehicle

    def km(a, b):
        return haversine_m((a[0] / 1e6, a[1] / 1e6), (b[0] / 1e6, b[1] / 1e6)) / 1000

    out = []
    swapped = "[longitude, latitude] written the other way round? (the config's order is " \
              "GeoJSON's: longitude first)"
    line = v["corridor"]["line"] if v.get("corridor") else []
    for i in range(1, len(line)):
        d = km(line[i - 1], line[i])
        if d > FAR_KM:
            out.append("vehicle.corridor.line[%d]: %s km from the point before it: %s"
                       % (i, format(int(d), ","), swapped))
    zones = v["allowed_zones"]
    anchors = [z["circle"][:2] if "circle" in z else z["polygon"][0] for z in zones]
    for i, z in enumerate(zones):
        path = "vehicle.allowed_zones[%d]" % i
        if line:
            d, what = min(km(anchors[i], p) for p in line), "the route corridor's line"
        else:
            d, what = km(anchors[i], anchors[0]), "allowed_zones[0]"
        if d > FAR_KM:
            out.append("%s: %s km from %s: %s" % (path, format(int(d), ","), what, swapped))
        if "polygon" in z:
            x = _crossing_edges(z["polygon"])
            if x is not None:
                n = len(z["polygon"])
                out.append("%s.polygon: its edges cross (point %d to %d and point %d to %d): "
                           "list the corners in their order around the zone"
                           % (path, x[0], (x[0] + 1) % n, x[1], (x[1] + 1) % n))
    return out


def warnings_for(cfg: dict, doc: dict, board: str | None = None) -> list[str]:
    """Valid, but wrong for a real site."""
    out = []
    if str(doc.get("key", "")).lower() == PLACEHOLDER_KEY:
        out.append("key: the examples' placeholder key: use the receiver's key for this "
                   "account (guardline-panel new --from-template)")
    if str(doc.get("code_salt", "")).lower() == PLACEHOLDER_SALT:
        out.append("code_salt: the examples' placeholder salt: every panel needs its own "
                   "(guardline-panel new makes one)")
    if not cfg["users"]:
        out.append("users: none: nobody can arm or disarm this panel (guardline-panel "
                   "user add)")
    elif not any(u["authority"] == "master" for u in cfg["users"]):
        out.append("users: no master user")
    hashes = [u["code_hash"] for u in cfg["users"]]
    for i, h in enumerate(hashes):
        if h in hashes[:i]:
            out.append("users[%d].code_hash: same code as users[%d]" % (i, hashes.index(h)))
    for name, pc in (cfg.get("receiver") or {}).items():
        if pc and pc.get("type") in ("tcp", "udp") and pc["host"] in WILDCARD_HOSTS:
            out.append("receiver.%s.host: %s is the address a receiver listens on, not one "
                       "a panel can reach" % (name, pc["host"]))
    if board in ("esp32", "rp2"):
        for name, pc in (cfg.get("receiver") or {}).items():
            if pc and pc["type"] in ("tcp", "udp") and pc["host"].startswith("127."):
                out.append("receiver.%s.host: %s is the board itself" % (name, pc["host"]))
        needs_net = any(pc and pc["type"] in ("tcp", "udp")
                        for pc in (cfg.get("receiver") or {}).values())
        if needs_net and not (cfg.get("board") or {}).get("wifi"):
            out.append("board.wifi: missing: a %s board reports over Wi-Fi "
                       "(guardline-panel new --wifi-ssid)" % board)
    if cfg.get("vehicle") is not None:
        out += vehicle_warnings(cfg["vehicle"])
    return out


def load_receiver_side(path: str) -> tuple[dict | None, int | None]:
    """(supervision, heartbeat_s) from the receiver's panel template or
    from an account record (``guardline-receiver accounts show N --json``),
    for check to compare the panel's heartbeats with."""
    d = read_json(path)
    if not isinstance(d, dict):
        raise ProvisionError("%s: expected a JSON object" % path)
    if "supervised_paths" in d or "supervision" in d:
        sup = supervision_of(d, path)
        return sup, None
    hb = d.get("heartbeat_s")
    if "receivers" not in d or (hb is not None and not isinstance(hb, int)):
        raise ProvisionError("%s: neither the receiver's panel template nor an account "
                             "record (guardline-receiver accounts show N --json)" % path)
    return None, hb


def check_file(path: str, board: str | None = None, receiver_side: tuple | None = None
               ) -> tuple[dict | None, list[str], list[str]]:
    """(cfg, errors, warnings) with each message as ``FILE:LINE: path:
    message (did you mean ...)``, followed by the offending line.
    `receiver_side`: (supervision, heartbeat_s) as load_receiver_side
    gives them: a heartbeat longer than the receiver supervises is an
    error."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        return None, ["%s: cannot read (%s)" % (path, e.strerror or e)], []
    try:
        doc = json.loads(text)
    except ValueError as e:
        return None, ["%s: not valid JSON (%s)" % (path, e)], []
    cfg, errors = _config.validate(doc)
    where = locate(text)
    src = text.splitlines()

    def fmt(msg):
        field = msg.split(": ", 1)[0]
        p = field
        while p and p not in where:
            p = _parent(p)
        ln = where.get(p)
        if ln is None:
            return "%s: %s%s" % (path, msg, hint(msg))
        return "%s:%d: %s%s\n    %s" % (path, ln, msg, hint(msg), src[ln - 1].strip())

    if cfg is None:
        errors = errors or ["not a panel config"]
    elif not errors and receiver_side is not None:
        errors = ["timings.%s: %s" % m for m in supervision_mismatches(
            cfg["timings"], receiver_side[0], receiver_side[1])]
        if cfg.get("receiver", {}).get("backup") is None:
            errors = [e for e in errors if not e.startswith("timings." + PATH_HEARTBEAT[2])]
            if 2 in (receiver_side[0] or {}):
                errors.append("receiver.backup: none, but the receiver supervises the %s: "
                              "it reports that path silent for good; add the backup "
                              "receiver address" % path_label(2))
    errs = [fmt(e) for e in errors]
    warns = [] if errors or cfg is None else [fmt(w) for w in warnings_for(cfg, doc, board)]
    return (None if errors else cfg), errs, warns


def summary(cfg: dict) -> str:
    return "%s panel, %saccount %s, %d zones, %d partitions, %d users" % (
        cfg["kind"], "DC-09 " if cfg.get("protocol") == "dc09" else "", account_label(cfg), len(cfg["zones"]), len(cfg["partitions"]),
        len(cfg["users"]))
