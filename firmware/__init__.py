"""Guardline panel firmware: host-side tooling.

The firmware itself is MicroPython code in ``firmware/device/`` (flat
modules, as they sit on a board's filesystem).  This package holds what
runs on the host: the ``guardline-panel`` CLI (:mod:`firmware.cli`: new,
user, check, build, flash, verify, runtime, walk-test, sim, ctl), the
unix-port launcher (:mod:`firmware.sim`), the bundle builder
(:mod:`firmware.build`), provisioning (:mod:`firmware.provision`),
flashing over mpremote (:mod:`firmware.flash`) and the walk test
(:mod:`firmware.walktest`).

``firmware.device.config`` is importable here too: the config validator
is shared between the panel and the host.
"""

import os

import protocol.lean

HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE_DIR = os.path.join(HERE, "device")
REPO = os.path.dirname(HERE)
# the lean protocol modules, wherever the protocol package is installed
LEAN_DIR = os.path.dirname(os.path.abspath(protocol.lean.__file__))
# copied into every bundle from protocol/lean (the lead owns them)
PROTOCOL_MODULES = ("glwire.py", "glpanel.py", "gldc09.py")  # gldc09: "protocol": "dc09"
# device modules that a board bundle leaves out (unix-port simulation only)
SIM_ONLY = ("board_sim.py", "simctl.py", "simgps.py")
