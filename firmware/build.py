"""Build the firmware bundle: device modules + the lean protocol modules,
compiled with mpy-cross, plus (for a site) the panel's config and a
manifest that proves later what was flashed.

    python -m firmware.build [CONFIG.json] [--out build/firmware] [--board sim|esp32|rp2]
    guardline-panel build site.json -o bundle/ --board esp32

The bundle is flat (as on a board's filesystem root): ``main.py`` stays
source (MicroPython runs ``main.py`` at boot and never a ``main.mpy``),
everything else becomes ``.mpy``.  For a board the simulation modules are
left out.  Install it with ``guardline-panel flash`` (docs/installer.md).

``manifest.json`` (written last, not listed in itself) records the
firmware version, the source revision, the mpy-cross version, the board,
and every file with its size and sha256, and ``bundle_sha256``: the
sha256 of the lines ``"<sha256>  <name>\n"`` for the listed files in name
order, which is what ``sha256sum`` prints, so anyone can recompute it:

    cd bundle && jq -r '.files[].name' manifest.json | xargs sha256sum | sha256sum

A bundle is refused if its config does not pass the firmware's validator.
``config.json`` holds the account key: it is written 0600.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys

from firmware import DEVICE_DIR, LEAN_DIR, PROTOCOL_MODULES, REPO, SIM_ONLY
from testkit import vm

_LOGGER = logging.getLogger(__name__)

BOARD_ONLY = {"sim": ("board_esp32.py", "board_rp2.py", "board_mcu.py"),
              "esp32": ("board_rp2.py",) + SIM_ONLY,
              "rp2": ("board_esp32.py",) + SIM_ONLY}


MANIFEST_NAME = "manifest.json"
CONFIG_NAME = "config.json"  # where a board's firmware reads it (board_mcu.py)
MANIFEST_FORMAT = 1


def sources(board: str = "sim") -> list[str]:
    skip = set(BOARD_ONLY.get(board, ()))
    out = [os.path.join(DEVICE_DIR, f) for f in sorted(os.listdir(DEVICE_DIR))
           if f.endswith(".py") and f != "__init__.py" and f not in skip]
    out += [os.path.join(LEAN_DIR, f) for f in PROTOCOL_MODULES]
    return out


def _bundle_names() -> set[str]:
    """Every file name a build of any board writes."""
    names = {CONFIG_NAME, MANIFEST_NAME}
    for board in BOARD_ONLY:
        for src in sources(board):
            n = os.path.basename(src)
            names |= {n, n[:-3] + ".mpy"}
    return names


def _check_out(out: str) -> None:
    """`out` is new, empty or an earlier bundle: a build removes the .py
    and .mpy files it finds there (stale modules would shadow new ones),
    so a directory of someone's own files (``-o .`` in a project) is
    refused before anything is touched."""
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise BundleError("%s: exists and is not a directory" % out)
    known = _bundle_names()
    other = sorted(f for f in os.listdir(out)
                   if f not in known and not (f.startswith("flash-") and f.endswith(".json")))
    if other:
        raise BundleError("%s holds files that are not a firmware bundle's (%s%s): give a new "
                          "or empty directory" % (out, ", ".join(other[:3]),
                                                  ", ..." if len(other) > 3 else ""))


def build(out: str, board: str = "sim", compile_mpy: bool = True,
          opt: int = 0) -> dict[str, int]:
    """Write the bundle to `out`; return {file name: size in bytes}."""
    _check_out(out)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith((".py", ".mpy")) or f in (CONFIG_NAME, MANIFEST_NAME):
            os.unlink(os.path.join(out, f))
    sizes = {}
    for src in sources(board):
        name = os.path.basename(src)
        if not compile_mpy or name == "main.py":
            shutil.copy(src, os.path.join(out, name))
            sizes[name] = os.path.getsize(os.path.join(out, name))
            continue
        dst = os.path.join(out, name[:-3] + ".mpy")
        cmd = [vm.mpy_cross(), "-O%d" % opt, "-o", dst, "-s", name, src]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("mpy-cross failed on %s:\n%s%s" % (src, r.stdout, r.stderr))
        sizes[os.path.basename(dst)] = os.path.getsize(dst)
    return sizes


class BundleError(Exception):
    """A bundle that cannot be built or does not match its manifest."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle_digest(files: list[dict]) -> str:
    """sha256 of the sha256sum-style listing of `files` in name order."""
    text = "".join("%s  %s\n" % (f["sha256"], f["name"])
                   for f in sorted(files, key=lambda f: f["name"]))
    return hashlib.sha256(text.encode()).hexdigest()


def firmware_version() -> str:
    """reporter.FW_VERSION (what the panel sends in its HELLO), read from
    the source: the device modules are not importable under CPython as a
    whole."""
    with open(os.path.join(DEVICE_DIR, "reporter.py"), encoding="utf-8") as f:
        m = re.search(r"^FW_VERSION = \((\d+), (\d+), (\d+)\)", f.read(), re.M)
    return ".".join(m.groups()) if m else "unknown"


def mpy_cross_version() -> str:
    try:
        r = subprocess.run([vm.mpy_cross(), "--version"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired, vm.VMNotFound) as e:
        return "unknown (%s)" % e
    return (r.stdout or r.stderr).strip()


def source_revision() -> str | None:
    """The git commit the firmware sources come from, "+dirty" when the
    device or protocol sources differ from it; None outside a checkout."""
    if not os.path.exists(os.path.join(REPO, ".git")):  # a file in a git worktree
        return None
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--",
                                os.path.relpath(DEVICE_DIR, REPO),
                                os.path.relpath(LEAN_DIR, REPO)],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (head + ("+dirty" if dirty else "")) if head else None


def bundle(out: str, board: str = "sim", config: str | None = None,
           opt: int = 0) -> dict:
    """Build the firmware into `out`, add `config` (validated first) and
    write the manifest; returns the manifest."""
    site = {}
    if config is not None:
        from firmware.device import config as _config  # noqa: PLC0415

        cfg, errors, _ = _config.load(config)
        if errors or cfg is None:
            raise BundleError("%s: %d error(s), run guardline-panel check: %s"
                              % (config, len(errors), errors[0]))
        # a DC-09 panel's account is the hex string in its dc09 block
        account = (cfg["dc09"]["account"] if cfg.get("protocol") == "dc09"
                   else cfg["account"])
        site = {"account": account, "panel_kind": cfg["kind"],
                "site_name": cfg["name"], "zones": len(cfg["zones"])}
    build(out, board, True, opt)
    if config is not None:
        dst = os.path.join(out, CONFIG_NAME)
        with open(config, "rb") as f:
            data = f.read()
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # whatever the umask: it holds the account key
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    files = []
    for name in sorted(os.listdir(out)):
        if name.endswith((".py", ".mpy")) or name == CONFIG_NAME:
            p = os.path.join(out, name)
            files.append({"name": name, "size": os.path.getsize(p), "sha256": sha256_file(p)})
    manifest = {
        "format": MANIFEST_FORMAT,
        "firmware_version": firmware_version(),
        "source_revision": source_revision(),
        "mpy_cross_version": mpy_cross_version(),
        "mpy_cross_opt": opt,
        "board": board,
        "built_at": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "config": CONFIG_NAME if config is not None else None,
        **site,
        "files": files,
        "bundle_sha256": bundle_digest(files),
    }
    with open(os.path.join(out, MANIFEST_NAME), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def read_manifest(bundle_dir: str) -> dict:
    path = os.path.join(bundle_dir, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except OSError as e:
        raise BundleError("%s: cannot read (%s); build with guardline-panel build"
                          % (path, e.strerror or e)) from None
    except ValueError as e:
        raise BundleError("%s: not valid JSON (%s)" % (path, e)) from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT \
            or not isinstance(m.get("files"), list):
        raise BundleError("%s: not a format %d bundle manifest" % (path, MANIFEST_FORMAT))
    if bundle_digest(m["files"]) != m.get("bundle_sha256"):
        raise BundleError("%s: bundle_sha256 does not match its file list" % path)
    return m


def check_bundle(bundle_dir: str, manifest: dict | None = None) -> list[str]:
    """Files of the bundle that differ from its manifest (empty: intact)."""
    m = manifest or read_manifest(bundle_dir)
    problems = []
    for f in m["files"]:
        p = os.path.join(bundle_dir, f["name"])
        if not os.path.exists(p):
            problems.append("%s: missing" % f["name"])
        elif sha256_file(p) != f["sha256"]:
            problems.append("%s: sha256 differs from the manifest" % f["name"])
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="guardline-panel build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run_args(ap.parse_args(argv))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("config", nargs="?", help="the site's panel config (put in the bundle "
                    "as config.json)")
    ap.add_argument("--out", "-o", default=os.path.join("build", "firmware"))
    ap.add_argument("--board", choices=sorted(BOARD_ONLY), default="sim")
    ap.add_argument("--source", action="store_true", help="copy .py, do not compile "
                    "(no manifest)")
    ap.add_argument("-O", type=int, default=0, dest="opt", help="mpy-cross optimisation level")


def run_args(a) -> int:
    try:
        if a.source:
            sizes = build(a.out, a.board, False, a.opt)
            for n in sorted(sizes):
                print("%7d  %s" % (sizes[n], n))
            print("%7d  total (%d files) in %s" % (sum(sizes.values()), len(sizes), a.out))
            return 0
        m = bundle(a.out, a.board, a.config, a.opt)
    except (BundleError, RuntimeError) as e:
        print("guardline-panel build: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("guardline-panel build: %s: %s" % (e.filename or a.out, e.strerror or e),
              file=sys.stderr)
        return 1
    for f in m["files"]:
        print("%7d  %s  %s" % (f["size"], f["sha256"][:16], f["name"]))
    print("%7d  total (%d files) in %s" % (sum(f["size"] for f in m["files"]),
                                            len(m["files"]), a.out))
    print("firmware %s (%s), %s, board %s" % (m["firmware_version"],
                                             m["source_revision"] or "no git revision",
                                             m["mpy_cross_version"], m["board"]))
    if a.config:
        print("account %s, %s" % (m["account"], m["site_name"]))
    print("bundle sha256 %s" % m["bundle_sha256"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
