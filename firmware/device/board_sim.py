# The simulated board for the MicroPython unix port.
#
# Inputs (zone loop resistances, mains, battery, box tamper, network
# paths, the siren and strobe lines' resistance read back by the panel's
# sounder supervision) are set over the control socket (simctl.py, control.py,
# docs/simulator.md) and kept in <state-dir>/sim_env.json, so they survive
# a simulated power cycle the way a door left open stays open when the
# panel reboots.  Outputs are recorded for the control socket to read.
#
# A vehicle unit's GNSS receiver is a TCP socket (--gps, default the
# control port + 1; simgps.py, imported only by a vehicle unit's board)
# that the host's replay (firmware/gpsreplay.py) connects to.
#
# Command line (firmware/sim.py builds it):
#     micropython main.py --config CONFIG.json --state-dir DIR
#                         [--control HOST:PORT] [--gps HOST:PORT]

import sys
import json
import hal
import eol
from fwutil import const

_LOG_LINES = const(200)  # console lines kept for the "log" command
_EXIT_NO_GPS = const(5)  # firmware/sim.py NO_GPS
ENV_FILE = "sim_env.json"
# zone "state" -> loop ohms (None: the configured DEOL value)
_STATES = {"normal": None, "alarm": None, "tamper": -1, "open": -1, "short": 0}


def _arg(name, default=None):
    a = sys.argv
    for i in range(len(a) - 1):
        if a[i] == name:
            return a[i + 1]
    return default


class Board(hal.BaseBoard):
    simulated = True

    def __init__(self, config_path=None, state_dir=None, control=None):
        # from the command line (firmware/sim.py builds it) unless given
        # (the test kit's in-process panel)
        self.config_path = config_path or _arg("--config", "config.json")
        self.state_dir = state_dir or _arg("--state-dir", ".")
        self.control = control or _arg("--control", "127.0.0.1:7800")
        self.keep_log(_LOG_LINES)
        self.pullup = 4700
        self.normal = 2200
        self.alarm = 4400
        # "sounders": siren and strobe line ohms (-1 open, None: the EOL,
        # i.e. normal_ohms)
        self.env = {"zones": {}, "ac": True, "battery_mv": 13200, "box_tamper": False,
                    "paths": [True, True], "net": True, "sounders": [None, None],
                    "gps": {"jam": False, "silent": False}}
        try:
            with open(self.path(ENV_FILE)) as f:
                e = json.load(f)
            for k in self.env:
                if k in e:
                    self.env[k] = e[k]
        except (OSError, ValueError):
            pass
        # loop resistance per input (-1 open); JSON keeps them by str(input)
        self.ohms = {}
        for k in self.env["zones"]:
            self.ohms[int(k)] = self.env["zones"][k]
        self.out = {"siren": False, "strobe": False, "lock": True, "supply": True}
        self.keys = []
        self.smoke = []  # inputs of verified fire zones: on the resettable supply
        self.gps = _arg("--gps")  # None: the control port + 1 (simgps.py)
        self.gpsr = None  # a vehicle unit's receiver (simgps.SimGps)

    def setup(self, cfg):
        self.pullup = cfg["eol"]["pullup_ohms"]
        self.normal = cfg["eol"]["normal_ohms"]
        self.alarm = cfg["eol"]["alarm_ohms"]
        self.smoke = [z["input"] for z in cfg["zones"] if z.get("verify")]
        if cfg.get("vehicle") is not None:
            import simgps
            self.gpsr = simgps.SimGps(self)

    def save_env(self):
        z = {}
        for k in self.ohms:
            z[str(k)] = self.ohms[k]
        self.env["zones"] = z
        with open(self.path(ENV_FILE), "w") as f:
            json.dump(self.env, f)

    # -- inputs --------------------------------------------------------------

    def zone_raw(self, inp):
        ohms = self.ohms.get(inp)
        if ohms is None:
            ohms = self.normal
        return eol.raw_for_ohms(ohms, self.pullup)

    def ac_ok(self):
        return self.env["ac"]

    def battery_mv(self):
        return self.env["battery_mv"]

    def box_tamper(self):
        return self.env["box_tamper"]

    def path_up(self, i):
        return self.env["net"] and self.env["paths"][i]

    def sounder_raw(self, k):
        ohms = self.env["sounders"][k]
        return eol.raw_for_ohms(self.normal if ohms is None else ohms, self.pullup)

    # -- the GNSS receiver's UART (a vehicle unit: simgps.py) ---------------------

    def gps_read(self, buf):
        return 0 if self.gpsr is None else self.gpsr.read(buf)

    # -- outputs -------------------------------------------------------------

    def outputs(self, siren, strobe, lock, supply=True):
        o = self.out
        if o["siren"] != siren or o["strobe"] != strobe or o["lock"] != lock or \
                o["supply"] != supply:
            self.console("outputs siren=%d strobe=%d lock=%d supply=%d"
                         % (siren, strobe, lock, supply))
        if o["supply"] and not supply and self.smoke:
            # the detector supply cut: a latched smoke detector forgets its
            # alarm (a test that wants the smoke to persist trips it again)
            for inp in self.smoke:
                if self.ohms.get(inp) == self.alarm:
                    self.ohms[inp] = self.normal
            self.save_env()
        o["siren"] = siren
        o["strobe"] = strobe
        o["lock"] = lock
        o["supply"] = supply

    # -- control protocol inputs (control.py) -----------------------------------

    def sim_input(self, cmd, req, app):
        env = self.env
        if cmd == "gps":
            if app.panel is None or app.panel.unit is None:
                raise ValueError("gps: not a vehicle unit (kind \"vehicle\" or \"patrol\")")
            return self.gpsr.command(req, app)
        if cmd == "zone":
            p = app.panel
            zid = req["zone"]
            if p is None or zid not in p.zid:
                raise ValueError("no zone %r" % (zid,))
            inp = p.zinput[p.zid.index(zid)]
            if "ohms" in req:
                ohms = int(req["ohms"])
            else:
                st = req["state"]
                if st not in _STATES:
                    raise ValueError("state must be one of normal, alarm, tamper, short")
                ohms = _STATES[st]
                if st == "normal":
                    ohms = self.normal
                elif st == "alarm":
                    ohms = self.alarm
            self.ohms[inp] = ohms
            self.save_env()
            return {"ok": True, "ohms": ohms}
        if cmd == "sounder":
            line = req["line"]
            if line not in ("siren", "strobe"):
                raise ValueError("line must be siren or strobe")
            if "ohms" in req:
                ohms = int(req["ohms"])
            else:
                st = req["state"]
                if st not in ("normal", "open", "short"):
                    raise ValueError("state must be one of normal, open, short")
                ohms = None if st == "normal" else (-1 if st == "open" else 0)
            env["sounders"][0 if line == "siren" else 1] = ohms
            self.save_env()
            return {"ok": True, "ohms": self.normal if ohms is None else ohms}
        if cmd == "ac":
            env["ac"] = bool(req["on"])
        elif cmd == "battery":
            env["battery_mv"] = int(req["mv"])
        elif cmd == "box_tamper":
            env["box_tamper"] = bool(req["open"])
        elif cmd == "net":
            env["net"] = bool(req["up"])
        else:  # path
            env["paths"][int(req["path"]) - 1] = bool(req["up"])
        self.save_env()
        return {"ok": True}

    # -- links: the sim's "serial" path is a TCP stream (ser2net style) -------

    def open_link(self, i, pc):
        import links

        def gate():
            return self.path_up(i)
        if pc["type"] == "udp":
            return links.UdpLink(pc["host"], pc["port"], gate)
        return links.TcpLink(pc["host"], pc["port"], gate)

    def tasks(self, app):
        if self.gpsr is not None and self.gpsr.error:
            # a vehicle nobody can drive must not run on unnoticed (simctl.py)
            self.console(self.gpsr.error + "; stopping")
            app.stop(_EXIT_NO_GPS)
        import simctl
        return [simctl.serve(app, self)]
