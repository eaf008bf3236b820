"""What a --target, --fixture, config or wiring names, checked before a
run starts: a target that names no usable port would make every scenario
skip or error and look like a run.

A leaf: it builds no driver (hil/target.py's ``open_target_url`` does),
so guardline-hil checks its command line before pytest, the drivers and
the test kit are loaded.
"""

from __future__ import annotations

import json
import os


class TargetURLError(ValueError):
    """A --target or --fixture that names no usable port (or a config or
    wiring file that cannot be used); the message says what was given and
    what is expected."""


TARGET_HELP = ("sim, or serial:URL for a board's console in test mode: serial:///dev/ttyUSB0, "
               "serial:socket://HOST:PORT, serial:rfc2217://HOST:PORT")


def serial_url(url: str, what: str = "--target") -> str:
    """The pyserial URL (or device path) of a ``serial:...`` target, checked
    before anything runs: a device path must exist, a ``socket://`` server
    must accept a connection, any other URL must be one pyserial knows.
    (A device is not opened here: opening an ESP32's USB port resets it.)"""
    import serial  # noqa: PLC0415

    port = url
    if what in ("--target", "--hil-target"):
        if url == "sim":
            return url
        if not url.startswith("serial:"):
            hint = ""
            if url.startswith("/dev/") or url.upper().startswith("COM") or "://" in url:
                hint = " (did you mean serial:%s?)" % (url if "://" in url else "//" + url)
            raise TargetURLError("%s %r: expected %s%s" % (what, url, TARGET_HELP, hint))
        port = url[len("serial://"):] if url.startswith("serial://") else url[len("serial:"):]
    if not port:
        raise TargetURLError("%s %r: no port after serial:" % (what, url))
    if "://" not in port:
        if not os.path.exists(port):
            raise TargetURLError("%s %s: no such port %s (is the board plugged in? "
                                 "ls /dev/ttyUSB* /dev/ttyACM*)" % (what, url, port))
        if not os.access(port, os.R_OK | os.W_OK):
            raise TargetURLError("%s %s: %s is not readable and writable by you (on "
                                 "Linux: the dialout group)" % (what, url, port))
        return port
    try:
        serial.serial_for_url(port, do_not_open=True)
    except (ValueError, serial.SerialException) as e:
        raise TargetURLError("%s %s: %s" % (what, url, e)) from None
    if port.startswith("socket://"):
        import socket  # noqa: PLC0415
        import urllib.parse  # noqa: PLC0415

        u = urllib.parse.urlsplit(port)
        try:
            with socket.create_connection((u.hostname, u.port), timeout=5):
                pass
        except (OSError, ValueError, TypeError) as e:
            raise TargetURLError("%s %s: cannot connect (%s)" % (what, url, e)) from None
    return port


def check_run(target: str, fixture: str | None = None, json_files=(),
              names=("--target", "--fixture")) -> None:
    """What would make every scenario of a run skip or error, refused
    before it starts (TargetURLError): the target, the fixture, and each
    (option, path) of `json_files` (panel config, wiring: a JSON object).
    `names`: how the caller spells the two options (guardline-hil or pytest)."""
    serial_url(target, names[0])
    if fixture:
        serial_url(fixture, names[1])
    for opt, path in json_files:
        if path is None:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise TargetURLError("%s %s: cannot read (%s)" % (opt, path, e.strerror or e)) \
                from None
        except ValueError as e:
            raise TargetURLError("%s %s: not valid JSON (%s)" % (opt, path, e)) from None
        if not isinstance(doc, dict):
            raise TargetURLError("%s %s: expected a JSON object" % (opt, path))
