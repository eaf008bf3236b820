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

TEMPLATE_FIELDS = ("account", "key", "protocol", "receivers", "heartbeat_s", "supervision",
                   "site_name", "zones", "partitions")


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
    rx = t.get("receivers") or []
    if not isinstance(rx, list) or not rx:
        raise ProvisionError("%s: receivers: at least one receiver address is needed"
                             % path)
    paths = []
    for i, r in enumerate(rx):
        if not isinstance(r, dict):
            raise ProvisionError("%s: receivers[%d]: expected an object" % (path, i))
        paths.append(parse_receiver("%s/%s:%s" % (r.get("transport", "tcp"), r.get("host"),
                                                  r.get("port")),
                                    "%s: receivers[%d]" % (path, i)))
    out = {"account": acct, "key": key.hex(), "protocol": proto, "receivers": paths,
           "heartbeat_s": t.get("heartbeat_s"), "site_name": t.get("site_name") or "",
           "supervision": _template_supervision(t.get("supervision") or [], path),
           "zones": {}, "partitions": {}}
    for field in ("zones", "partitions"):
        m = t.get(field) or {}
        if not isinstance(m, dict):
            raise ProvisionError("%s: %s: expected an object {\"number\": \"name\"}"
                                 % (path, field))
        for k, v in m.items():
            if not str(k).isdigit() or not isinstance(v, str):
                raise ProvisionError("%s: %s[%r]: expected \"number\": \"name\""
                                     % (path, field, k))
            out[field][int(k)] = v
    return out


def _template_supervision(sup, path: str) -> list:
    """The template's ``supervision``: [{"path", "heartbeat_s", "grace_s"}]
    for each path the receiver supervises (docs/receiver.md, "Panel
    templates"); [] for an unsupervised account or an older template."""
    if not isinstance(sup, list):
        raise ProvisionError("%s: supervision: expected a list" % path)
    for i, p in enumerate(sup):
        if not (isinstance(p, dict) and p.get("path") in (1, 2)
                and all(isinstance(p.get(k), int) and not isinstance(p.get(k), bool)
                        and p[k] >= 0 for k in ("heartbeat_s", "grace_s"))):
            raise ProvisionError("%s: supervision[%d]: expected {\"path\": 1 or 2, "
                                 "\"heartbeat_s\": S, \"grace_s\": S}" % (path, i))
    return [dict(p) for p in sup]


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


def base_config(kind: str) -> dict:
    if kind not in _config.KINDS:
        raise ProvisionError("--kind: %r is not one of %s" % (kind, ", ".join(_config.KINDS)))
    path = os.path.join(EXAMPLES_DIR, "%s.json" % kind)
    if not os.path.exists(path):
        raise ProvisionError("no example config for %s panels at %s" % (kind, path))
    return read_json(path)


def new_config(kind: str, template: dict | None = None, account: int | None = None,
               key: str | None = None, receivers: list | None = None,
               name: str | None = None, heartbeat_s: int | None = None,
               wifi: dict | None = None) -> tuple[dict, list[str]]:
    """A starting config for a site; returns (doc, notes for the installer).

    The example for `kind` gives the structure and timings; the template
    (or the options, which win over it) gives account, key, receivers,
    site name, heartbeat, zone and partition names.  Users are left empty:
    add them with `user add`, under the new salt."""
    base = base_config(kind)
    doc = copy.deepcopy(base)
    notes = []
    t = template or {}
    if t.get("protocol") == "dc09":
        _dc09_identity(doc, t, account, key, notes)
    else:
        _native_identity(doc, t, account, key, notes)
    doc["code_salt"] = secrets.token_bytes(SALT_BYTES).hex()
    paths = list(receivers or []) or list(t.get("receivers") or [])
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
    if name or t.get("site_name"):
        doc["name"] = _fit(name or t["site_name"])
    hb = heartbeat_s if heartbeat_s is not None else t.get("heartbeat_s")
    if hb is not None:
        lo, hi = _config.TIMINGS["heartbeat_s"][1:]
        if not lo <= hb <= hi:
            raise ProvisionError("heartbeat_s: %s is out of the panel's range %d..%d"
                                 % (hb, lo, hi))
        doc.setdefault("timings", {})["heartbeat_s"] = hb
    if t.get("partitions"):
        doc["partitions"] = [{"id": pid, "name": _fit(pname)}
                             for pid, pname in sorted(t["partitions"].items())]
        locks = [p["id"] for p in base["partitions"] if "time_lock" in p]
        if locks:
            notes.append("partitions are the receiver's: no time lock is set (the "
                         "example had one on partition %s); add \"time_lock\" where the "
                         "site needs one" % locks[0])
    pids = [p["id"] for p in doc["partitions"]]
    if t.get("zones"):
        by_id = {z["id"]: z for z in base["zones"]}
        zones = []
        for zid, zname in sorted(t["zones"].items()):
            ex = by_id.get(zid, {})
            zt, why = guess_zone_type(zname, kind, ex.get("type"))
            part = ex.get("partition") if ex.get("partition") in pids else pids[0]
            zones.append({"id": zid, "name": _fit(zname), "type": zt, "partition": part})
            notes.append("zone %d %r: type %s (%s), partition %d: CHECK" % (
                zid, zname, zt, why, part))
        doc["zones"] = zones
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
    return hashlib.sha256(bytes.fromhex(salt_hex) + code.encode()).hexdigest()


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
        bytes.fromhex(salt)
    except (TypeError, ValueError):
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
    if board in ("esp32", "rp2"):
        for name, pc in (cfg.get("receiver") or {}).items():
            if pc and pc["type"] in ("tcp", "udp") and pc["host"].startswith("127."):
                out.append("receiver.%s.host: %s is the board itself" % (name, pc["host"]))
        needs_net = any(pc and pc["type"] in ("tcp", "udp")
                        for pc in (cfg.get("receiver") or {}).values())
        if needs_net and not (cfg.get("board") or {}).get("wifi"):
            out.append("board.wifi: missing: a %s board reports over Wi-Fi "
                       "(guardline-panel new --wifi-ssid)" % board)
    return out


def check_file(path: str, board: str | None = None) -> tuple[dict | None, list[str], list[str]]:
    """(cfg, errors, warnings) with each message as ``FILE:LINE: path:
    message (did you mean ...)``, followed by the offending line."""
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

    errs = [fmt(e) for e in errors]
    warns = [] if errors else [fmt(w) for w in warnings_for(cfg, doc, board)]
    return (None if errors else cfg), errs, warns


def summary(cfg: dict) -> str:
    return "%s panel, %saccount %s, %d zones, %d partitions, %d users" % (
        cfg["kind"], "DC-09 " if cfg.get("protocol") == "dc09" else "", account_label(cfg), len(cfg["zones"]), len(cfg["partitions"]),
        len(cfg["users"]))
