"""The firmware's geometry and vehicle rules, loaded under CPython.

The receiver re-checks what a vehicle unit checks itself (issue 19: "a
vehicle whose firmware lost its config must still be caught") with the
unit's own code, so the two agree to the centimetre: ``geo`` (distances,
circles, polygons, corridors), ``vehicle`` (the rules and their state
tables) and ``vehicle_config`` (the ``vehicle`` section's validator).
They are flat MicroPython modules (``import geo``, ``from fwutil import
const``), so they are loaded here by file under their own names, without
putting firmware/device on ``sys.path`` (which would make every device
module, ``config`` and ``app`` among them, importable by its bare name).
A module of one of those names that is not the firmware's is refused.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

from firmware import DEVICE_DIR

# In import order: each imports only those before it.
MODULES = ("fwutil", "cid", "cfgutil", "geo", "vehicle_config", "vehicle")


def _load(name: str) -> types.ModuleType:
    path = os.path.join(DEVICE_DIR, name + ".py")
    have = sys.modules.get(name)
    if have is not None:
        if os.path.abspath(getattr(have, "__file__", "") or "") != os.path.abspath(path):
            raise ImportError("a module named %r that is not the firmware's (%s) is loaded: "
                              "the vehicle checks need %s" % (name, getattr(
                                  have, "__file__", "built in"), path))
        return have
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s" % path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


_mods = {n: _load(n) for n in MODULES}
geo = _mods["geo"]
vehicle = _mods["vehicle"]
vehicle_config = _mods["vehicle_config"]
