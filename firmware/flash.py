"""Putting firmware on a board: the MicroPython runtime (esptool for an
ESP32, a UF2 copy for a Pico W) and then the Guardline bundle (mpremote).

    guardline-panel runtime --board esp32 --port /dev/ttyUSB0 ESP32_GENERIC-v1.29.0.bin
    guardline-panel runtime --board rp2 RPI_PICO_W-v1.29.0.uf2
    guardline-panel flash --port /dev/ttyUSB0 bundle/
    guardline-panel verify --port /dev/ttyUSB0 [bundle/]

The bundle goes over mpremote's Python API (``SerialTransport``: raw REPL,
``fs_writefile``), so any port pyserial opens works, including a pty.
What ``flash`` keeps true:

- The bundle is checked against its own manifest before a byte is sent
  (a bundle altered after ``build`` is refused).
- Every file is verified **on the device** afterwards: the device hashes
  its own copy with its ``hashlib.sha256`` and the digests are compared
  with the manifest.  A device without ``hashlib`` is an error, never a
  silent fallback to reading the files back and hashing them here
  (mpremote's ``fs_hashfile`` does that fallback; we do not use it).
- ``main.py`` is removed first and written last, after everything else
  is verified: a board whose flashing was interrupted does not boot a mix
  of old and new modules (nor start the panel, whose 8 s hardware watchdog
  would reset the board under the next attempt).  Running ``flash`` again
  resumes: files whose on-device hash already matches are not rewritten.
- A stale ``X.py`` next to a new ``X.mpy`` is removed: MicroPython's
  import takes ``X.py`` before ``X.mpy``, so it would shadow the new code.
- The panel's state directory (``/data``: event queue, sequence store) is
  left alone, so a re-flashed panel neither loses queued events nor
  reuses sequence numbers the receiver has seen.
- The manifest itself is copied (``manifest.json``) so ``verify`` can
  later prove what is on a board without the laptop that flashed it.

The runtime step only builds command lines and checks the image file
(right chip, right UF2 family); esptool does the flashing.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time

from firmware import build as _build

_LOGGER = logging.getLogger(__name__)

# Bundle file names are flat, plain names: a manifest cannot make us write
# outside the board's root directory.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# What sys.platform says on the board each bundle is built for.
PLATFORMS = {"esp32": ("esp32",), "rp2": ("rp2",), "sim": ("linux", "darwin")}
# Bytes per raw-REPL write: the device holds one chunk (as repr'd bytes
# in the command) in its heap at a time; 256 is mpremote's own default.
CHUNK = 256
FIRST = "main.py"  # removed first, written last (see above)

# Runs on the device: the sha256 of one file, hex, or '-' if it cannot be
# opened.  Reads through one 512-byte buffer (no per-chunk allocation).
_DEVICE_HASH = """
import hashlib, binascii
def _gl_sha(n):
    try:
        f = open(n, 'rb')
    except OSError:
        return '-'
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    while True:
        k = f.readinto(b)
        if not k:
            break
        h.update(m[:k])
    f.close()
    return binascii.hexlify(h.digest()).decode()
"""


class FlashError(Exception):
    """Flashing or verifying failed; the message says what and where."""


class LinkError(FlashError):
    """The serial link or the REPL failed (a board reset by its watchdog,
    a cable pulled): worth reconnecting and resuming."""


# -- the device ---------------------------------------------------------------------


class Device:
    """A MicroPython board's filesystem and REPL over mpremote's serial
    transport.  ``soft_reset=False`` is mpremote's ``resume``: needed for
    the unix port, which has no soft reset.

    Every mpremote call goes through :meth:`_call`, the one place that
    sorts its failures: an error the device reports (a Python exception
    on the board, ``TransportExecError``) is a :class:`FlashError`; a link
    that fails (``TransportError``, and the ``OSError`` pyserial raises
    when the port goes away: EIO from a pty or a USB cable pulled) is a
    :class:`LinkError`, worth reconnecting."""

    def __init__(self, port: str, baudrate: int = 115200, soft_reset: bool = True,
                 wait: int = 0):
        from mpremote.transport_serial import SerialTransport  # noqa: PLC0415

        self.port = port
        self.t: SerialTransport = self._call(
            lambda: SerialTransport(port, baudrate=baudrate, wait=wait), "cannot open")
        try:
            self._call(lambda: self.t.enter_raw_repl(soft_reset=soft_reset),
                       "no MicroPython raw REPL", (
                           "; is the runtime installed (guardline-panel runtime)?%s" % (
                               " A board whose link drops on a soft reset (the unix port) "
                               "needs --resume" if soft_reset else "")))
        except FlashError:
            self._close_port()
            raise
        self._hash_ready = False

    def _call(self, fn, what: str, hint: str = "", device_file: str | None = None):
        from mpremote.transport import TransportError, TransportExecError  # noqa: PLC0415
        from serial import SerialException  # noqa: PLC0415

        try:
            return fn()
        except TransportExecError as e:  # a subclass of TransportError: first
            lines = (e.error_output or "").strip().splitlines() or ["(no output)"]
            raise FlashError("%s: %s: device error: %s" % (self.port, what, lines[-1])) \
                from None
        except OSError as e:
            # mpremote's file calls turn an OSError on the device into
            # OSError(errno, <the device file>): the device refused, the
            # link is fine.  pyserial's failures are SerialException or a
            # bare EIO from the port.
            if device_file is not None and e.strerror == device_file \
                    and not isinstance(e, SerialException):
                raise FlashError("%s: %s: device error: %s" % (
                    self.port, what, errno.errorcode.get(e.errno or 0, e.errno))) from None
            raise LinkError("%s: %s (%s)%s" % (self.port, what, e, hint)) from None
        except TransportError as e:
            raise LinkError("%s: %s (%s)%s" % (self.port, what, e, hint)) from None

    def _close_port(self) -> None:
        try:
            self.t.close()
        except (OSError, AttributeError):
            pass

    def close(self) -> None:
        from mpremote.transport import TransportError  # noqa: PLC0415

        try:
            self.t.exit_raw_repl()
        except (TransportError, OSError):
            pass  # the link is gone already; what failed was reported
        finally:
            self._close_port()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def exec(self, code: str) -> str:
        return self._call(lambda: self.t.exec(code), "link error").decode("utf-8", "replace")

    def identify(self) -> dict:
        out = self.exec("import sys\nprint(sys.platform)\nprint(sys.version)\n"
                        "print(getattr(sys.implementation, '_machine', ''))")
        lines = (out.strip().splitlines() + ["", "", ""])[:3]
        return {"platform": lines[0].strip(), "version": lines[1].strip(),
                "machine": lines[2].strip()}

    def listdir(self) -> dict[str, int]:
        """Plain files in the current (root) directory: name -> size."""
        # ilistdir gives 3-tuples on some ports (no size): stat each file
        out = self.exec("import os\nfor e in os.ilistdir():\n"
                        " print(e[0], e[1], os.stat(e[0])[6])")
        files = {}
        for line in out.splitlines():
            parts = line.rsplit(" ", 2)
            if len(parts) == 3 and int(parts[1]) & 0x4000 == 0:
                files[parts[0]] = int(parts[2])
        return files

    def sha256(self, name: str) -> str | None:
        """The device's own sha256 of `name` (hex), None if absent."""
        _safe(name)
        if not self._hash_ready:
            try:
                self.exec("import hashlib\nhashlib.sha256")
            except LinkError:
                raise
            except FlashError:
                raise FlashError("%s: the device has no hashlib.sha256: files cannot be "
                                 "verified on the device" % self.port) from None
            self.exec(_DEVICE_HASH)
            self._hash_ready = True
        h = self.exec("print(_gl_sha(%r))" % name).strip()
        return None if h == "-" else h

    def write(self, name: str, data: bytes, progress=None) -> None:
        _safe(name)
        self._call(lambda: self.t.fs_writefile(name, data, chunk_size=CHUNK,
                                               progress_callback=progress),
                   "writing %s failed" % name, device_file=name)

    def read(self, name: str) -> bytes:
        _safe(name)
        return bytes(self._call(lambda: self.t.fs_readfile(name), "reading %s failed" % name,
                                device_file=name))

    def remove(self, name: str) -> None:
        _safe(name)
        self.exec("import os\nos.remove(%r)" % name)


def _safe(name: str) -> str:
    if not SAFE_NAME.match(name):
        raise FlashError("refusing file name %r (bundle files are plain names)" % name)
    return name


# -- progress -------------------------------------------------------------------------


class Progress:
    """One line per file; redrawn in place with the byte count on a tty."""

    def __init__(self, out=None):
        self.out = out or sys.stderr
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()

    def file(self, i: int, n: int, name: str, size: int | None, what: str):
        self._head = "[%2d/%d] %-18s %9s" % (i, n, name, "" if size is None else "%d B" % size)
        self.out.write(("\r" if self.tty else "") + self._head + "  " + what
                       + ("" if self.tty and what.endswith("...") else "\n"))
        self.out.flush()

    def bytes(self, done: int, total: int):
        if self.tty:
            self.out.write("\r%s  writing %3d%%" % (self._head, 100 * done // max(total, 1)))
            self.out.flush()

    def note(self, text: str):
        self.out.write(("\n" if self.tty else "") + text + "\n")
        self.out.flush()


# -- flash and verify ---------------------------------------------------------------------


def _utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_bundle(bundle_dir: str) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the files' contents, after checking them against
    each other."""
    try:
        m = _build.read_manifest(bundle_dir)
    except _build.BundleError as e:
        raise FlashError(str(e)) from None
    bad = _build.check_bundle(bundle_dir, m)
    if bad:
        raise FlashError("%s: the bundle does not match its manifest (altered after "
                         "build?): %s" % (bundle_dir, "; ".join(bad)))
    data = {}
    for f in m["files"]:
        with open(os.path.join(bundle_dir, _safe(f["name"])), "rb") as fh:
            data[f["name"]] = fh.read()
    with open(os.path.join(bundle_dir, _build.MANIFEST_NAME), "rb") as fh:
        data[_build.MANIFEST_NAME] = fh.read()
    return m, data


def expected_hashes(manifest: dict, manifest_bytes: bytes) -> dict[str, str]:
    out = {f["name"]: f["sha256"] for f in manifest["files"]}
    out[_build.MANIFEST_NAME] = hashlib.sha256(manifest_bytes).hexdigest()
    return out


def verify(dev: Device, expected: dict[str, str], progress: Progress | None = None) -> list[dict]:
    """Hash every expected file on the device; one row per file with
    ``ok``."""
    rows = []
    names = sorted(expected)
    for i, name in enumerate(names, 1):
        got = dev.sha256(name)
        ok = got == expected[name]
        rows.append({"name": name, "sha256": expected[name], "device_sha256": got, "ok": ok})
        if progress:
            progress.file(i, len(names), name, None, "verified on device" if ok else (
                "MISSING on device" if got is None else "MISMATCH: device has %s" % got[:16]))
    return rows


def flash(dev: Device, bundle_dir: str, progress: Progress | None = None,
          clean: bool = False, force: bool = False) -> dict:
    """Install the bundle on the device and verify it there.  Returns the
    flash record (also what ``flash-<time>.json`` holds)."""
    progress = progress or Progress()
    started = _utc()
    m, data = load_bundle(bundle_dir)
    ident = dev.identify()
    want = PLATFORMS.get(m.get("board") or "", ())
    if ident["platform"] not in want and not force:
        raise FlashError("%s: the device is a %r (%s) but the bundle is for board %r: "
                         "build for the right board (or --force)"
                         % (dev.port, ident["platform"], ident["machine"] or ident["version"],
                            m.get("board")))
    progress.note("device: %s, %s %s" % (ident["platform"], ident["machine"], ident["version"]))
    expected = expected_hashes(m, data[_build.MANIFEST_NAME])
    on_dev = dev.listdir()
    removed = []
    if FIRST in on_dev:
        dev.remove(FIRST)  # the board will not start a half-flashed panel
        removed.append(FIRST)
        del on_dev[FIRST]
    # stale modules that would shadow the new ones, or (clean) any module
    # that is not in the bundle
    for name in sorted(on_dev):
        if name in expected or not name.endswith((".py", ".mpy")):
            continue
        stem = name.rsplit(".", 1)[0]
        shadows = (stem + ".mpy") in expected or (stem + ".py") in expected
        if shadows or clean:
            dev.remove(name)
            removed.append(name)
    if removed:
        progress.note("removed from the device: %s" % ", ".join(removed))
    order = sorted(n for n in expected if n not in (FIRST, _build.MANIFEST_NAME))
    order += [FIRST, _build.MANIFEST_NAME]
    actions = {}
    for i, name in enumerate(order, 1):
        if name == FIRST:
            # everything else must be in place before the board may boot it
            early = [r["name"] for r in verify(dev, {n: expected[n] for n in order[:i - 1]})
                     if not r["ok"]]
            if early:
                raise FlashError("%s: verification failed before main.py was written: %s"
                                 % (dev.port, ", ".join(early)))
        body = data[name]
        if name in on_dev and on_dev[name] == len(body) and name != FIRST \
                and dev.sha256(name) == expected[name]:
            actions[name] = "unchanged"
            progress.file(i, len(order), name, len(body), "unchanged")
            continue
        progress.file(i, len(order), name, len(body), "writing...")
        dev.write(name, body, progress.bytes)
        actions[name] = "written"
        if progress.tty:
            progress.out.write("\n")
    progress.note("verifying on the device ...")
    rows = verify(dev, expected, progress)
    for r in rows:
        r["action"] = actions.get(r["name"])
    ok = all(r["ok"] for r in rows)
    record = {"port": dev.port, "device": ident, "started_at": started, "finished_at": _utc(),
              "bundle": os.path.abspath(bundle_dir), "bundle_sha256": m["bundle_sha256"],
              "board": m.get("board"), "firmware_version": m.get("firmware_version"),
              "account": m.get("account"), "removed": removed, "files": rows, "verified": ok}
    if not ok:
        bad = ", ".join(r["name"] for r in rows if not r["ok"])
        raise FlashError("%s: verification on the device failed: %s" % (dev.port, bad))
    return record


def write_record(bundle_dir: str, record: dict) -> str:
    path = os.path.join(bundle_dir, "flash-%s.json" % record["finished_at"].replace(":", ""))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    return path


def latest_record(bundle_dir: str) -> dict | None:
    """The most recent successful flash record of this bundle, if any."""
    try:
        names = sorted(n for n in os.listdir(bundle_dir)
                       if n.startswith("flash-") and n.endswith(".json"))
    except OSError:
        return None
    for n in reversed(names):
        try:
            with open(os.path.join(bundle_dir, n), encoding="utf-8") as f:
                r = json.load(f)
        except (OSError, ValueError):
            continue
        if r.get("verified"):
            return r
    return None


def verify_device(dev: Device, bundle_dir: str | None = None,
                  progress: Progress | None = None) -> dict:
    """What is on the device, proven: against the bundle's manifest, or
    (no bundle) against the manifest the device carries."""
    progress = progress or Progress()
    if bundle_dir:
        m, data = load_bundle(bundle_dir)
        mbytes = data[_build.MANIFEST_NAME]
    else:
        mbytes = dev.read(_build.MANIFEST_NAME)
        try:
            m = json.loads(mbytes)
            if _build.bundle_digest(m["files"]) != m["bundle_sha256"]:
                raise ValueError("bundle_sha256 does not match its file list")
        except (ValueError, KeyError, TypeError) as e:
            raise FlashError("%s: the device's manifest.json is not valid: %s"
                             % (dev.port, e)) from None
    rows = verify(dev, expected_hashes(m, mbytes), progress)
    return {"port": dev.port, "at": _utc(), "bundle_sha256": m["bundle_sha256"],
            "firmware_version": m.get("firmware_version"), "board": m.get("board"),
            "account": m.get("account"), "files": rows,
            "verified": all(r["ok"] for r in rows)}


# -- the MicroPython runtime ----------------------------------------------------------------

# ESP32 family: where MicroPython's merged image goes (the bootloader's
# offset: 0x1000 on the original ESP32 and the S2, 0 on the newer chips, as
# micropython.org's download pages say) and the chip id in the image's
# extended header (ESP-IDF esp_app_format.h, esp_chip_id_t).
ESP_CHIPS = {
    "esp32": (0x1000, 0x0000),
    "esp32s2": (0x1000, 0x0002),
    "esp32c3": (0x0, 0x0005),
    "esp32s3": (0x0, 0x0009),
    "esp32c6": (0x0, 0x000D),
}
ESP_IMAGE_MAGIC = 0xE9

# UF2 (github.com/microsoft/uf2): 512-byte blocks, three magic numbers,
# flag 0x2000 = the family id is in word 7.
UF2_MAGIC0, UF2_MAGIC1, UF2_MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
UF2_FLAG_FAMILY = 0x00002000
UF2_FAMILIES = {0xE48BFF56: "RP2040", 0xE48BFF59: "RP2350 (Arm)", 0xE48BFF5A: "RP2350 (RISC-V)",
                0xE48BFF57: "RP2350 (absolute)"}
RP2040_FAMILY = 0xE48BFF56
UF2_DRIVE_LABELS = ("RPI-RP2",)


def _read_image(path: str, n: int = -1) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise FlashError("%s: cannot read (%s)" % (path, e.strerror or e)) from None


def check_esp_image(path: str, chip: str) -> None:
    """Refuse a file that is not an ESP image for `chip`."""
    if chip not in ESP_CHIPS:
        raise FlashError("--chip: %r is not one of %s" % (chip, ", ".join(ESP_CHIPS)))
    head = _read_image(path, 16)
    if len(head) < 16 or head[0] != ESP_IMAGE_MAGIC:
        raise FlashError("%s: not an ESP firmware image (no 0xE9 header); download the "
                         ".bin for your board from micropython.org" % path)
    chip_id = int.from_bytes(head[12:14], "little")
    if chip_id != ESP_CHIPS[chip][1]:
        names = {v[1]: k for k, v in ESP_CHIPS.items()}
        raise FlashError("%s: this image is for %s, not %s" % (
            path, names.get(chip_id, "chip id %d" % chip_id), chip))


def check_uf2(path: str, family: int = RP2040_FAMILY) -> int:
    """Refuse a file that is not a UF2 image for `family`; returns the
    number of blocks."""
    data = _read_image(path)
    if not data or len(data) % 512:
        raise FlashError("%s: not a UF2 file (size is not a multiple of 512)" % path)
    for i in range(0, len(data), 512):
        b = data[i:i + 512]
        w = [int.from_bytes(b[j:j + 4], "little") for j in range(0, 32, 4)]
        if w[0] != UF2_MAGIC0 or w[1] != UF2_MAGIC1 or \
                int.from_bytes(b[508:512], "little") != UF2_MAGIC_END:
            raise FlashError("%s: not a UF2 file (bad magic in block %d)" % (path, i // 512))
        if w[2] & UF2_FLAG_FAMILY and w[7] != family:
            raise FlashError("%s: this UF2 is for %s, not %s (a Pico W needs the "
                             "RPI_PICO_W .uf2)" % (path, UF2_FAMILIES.get(w[7], hex(w[7])),
                                                   UF2_FAMILIES.get(family, hex(family))))
    return len(data) // 512


def esptool_argv() -> list[str] | None:
    """How to run esptool here, or None if it is not installed."""
    for name in ("esptool", "esptool.py"):
        p = shutil.which(name) or (os.path.join(os.path.dirname(sys.executable), name)
                                   if os.path.exists(os.path.join(
                                       os.path.dirname(sys.executable), name)) else None)
        if p:
            return [p]
    try:
        import esptool  # noqa: F401, PLC0415  # pyright: ignore[reportMissingImports]  (optional)
    except ImportError:
        return None
    return [sys.executable, "-m", "esptool"]


def esptool_major(argv: list[str]) -> int:
    """esptool's major version (5 renamed erase_flash to erase-flash)."""
    try:
        r = subprocess.run(argv + ["version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 4
    m = re.search(r"v(\d+)\.", r.stdout + r.stderr)
    return int(m.group(1)) if m else 4


def esptool_commands(image: str, port: str, chip: str = "esp32", baud: int = 460800,
                     erase: bool = True, esptool: list[str] | None = None,
                     major: int = 5) -> list[list[str]]:
    """The esptool command lines that put MicroPython on a blank ESP32:
    erase the whole flash (a stale filesystem or NVS would survive
    otherwise), then write the image at the chip's bootloader offset."""
    if chip not in ESP_CHIPS:
        raise FlashError("--chip: %r is not one of %s" % (chip, ", ".join(ESP_CHIPS)))
    base = list(esptool or ["esptool"]) + ["--chip", chip, "--port", port]
    dash = major >= 5
    cmds = []
    if erase:
        cmds.append(base + ["erase-flash" if dash else "erase_flash"])
    cmds.append(base + ["--baud", str(baud), "write-flash" if dash else "write_flash",
                        "-z", "0x%x" % ESP_CHIPS[chip][0], image])
    return cmds


def uf2_drives(mounts_file: str = "/proc/mounts", extra=()) -> list[str]:
    """Mounted RP2 boot drives (a Pico held in BOOTSEL): mount points with
    an INFO_UF2.TXT naming an RP2 board."""
    cands = list(extra)
    try:
        with open(mounts_file, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 1:
                    cands.append(parts[1].replace("\\040", " "))
    except OSError:
        pass
    for base in ("/media", "/run/media", "/Volumes"):
        for root, dirs, _ in os.walk(base) if os.path.isdir(base) else ():
            for d in dirs:
                cands.append(os.path.join(root, d))
            if root.count(os.sep) - base.count(os.sep) >= 1:
                dirs[:] = []
    found = []
    for c in cands:
        info = os.path.join(c, "INFO_UF2.TXT")
        try:
            with open(info, encoding="utf-8", errors="replace") as f:
                text = f.read(4096)
        except OSError:
            continue
        if any("Board-ID: %s" % label in text for label in UF2_DRIVE_LABELS) \
                and c not in found:
            found.append(c)
    return found


def copy_uf2(image: str, drive: str) -> str:
    """Copy the UF2 onto the boot drive; the RP2040 writes it to flash and
    reboots into it (the drive then disappears)."""
    dst = os.path.join(drive, os.path.basename(image))
    with open(image, "rb") as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out)
        out.flush()
        os.fsync(out.fileno())
    return dst


def wait_for_repl(port: str, timeout: float = 30.0, soft_reset: bool = False) -> dict:
    """After a runtime install: poll the port until MicroPython answers."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            with Device(port, soft_reset=soft_reset) as dev:
                return dev.identify()
        except FlashError as e:
            last = e
            time.sleep(1)
    raise FlashError("%s: MicroPython did not answer within %.0f s (%s)" % (port, timeout, last))
