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
# control port + 1) that the host's replay (firmware/gpsreplay.py, a GPX
# route as NMEA 0183) connects to, as a serial-to-TCP bridge would carry
# the receiver's UART: its bytes are the UART's.  The control protocol's
# "gps" command jams the receiver (it prints "no fix" once a second, the
# replay's sentences are lost), silences it, trips the antenna input, or
# asks the replay for another speed ($PGLSIM,SPEEDUP: the way back on the
# UART, as a host configures a real receiver with its own sentences).
#
# Command line (firmware/sim.py builds it):
#     micropython main.py --config CONFIG.json --state-dir DIR
#                         [--control HOST:PORT] [--gps HOST:PORT]

import sys
import json
import select
import hal
import eol
from fwutil import const, ticks_ms, ticks_diff

_LOG_LINES = const(200)  # console lines kept for the "log" command
_EXIT_NO_GPS = const(5)  # firmware/sim.py NO_GPS
# what a jammed receiver prints once a second: no fix
_NO_FIX = b"$GPGGA,,,,,,0,00,,,,,,,*66\r\n$GPRMC,,V,,,,,,,,,,N*53\r\n"
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
        self.gps = _arg("--gps")  # None: the control port + 1 (_gps_listen)
        self.gps_srv = None  # the listening socket (a vehicle unit only)
        self.gps_conn = None  # the replay's connection
        self.gps_poll = None
        self.gps_error = None  # why the socket could not be opened
        self.no_fix_ms = 0

    def setup(self, cfg):
        self.pullup = cfg["eol"]["pullup_ohms"]
        self.normal = cfg["eol"]["normal_ohms"]
        self.alarm = cfg["eol"]["alarm_ohms"]
        self.smoke = [z["input"] for z in cfg["zones"] if z.get("verify")]
        if cfg.get("vehicle") is not None:
            self._gps_listen()

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

    # -- the GNSS receiver's UART: a TCP socket the replay connects to -----------

    def _gps_listen(self):
        import socket
        try:
            if self.gps is None:
                h, p = self.control.rsplit(":", 1)
                self.gps = "%s:%d" % (h, int(p) + 1)
            host, port = self.gps.rsplit(":", 1)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(socket.getaddrinfo(host, int(port))[0][-1])
            s.listen(1)
            s.setblocking(False)
        except (OSError, ValueError, IndexError) as e:
            self.gps_error = "GPS socket %s: cannot listen (%s)" % (self.gps, e)
            return
        self.gps_srv = s
        self.gps_poll = select.poll()
        self.gps_poll.register(s, select.POLLIN)
        self.console("GPS receiver: NMEA on %s (firmware/gpsreplay.py --out socket://%s)"
                     % (self.gps, self.gps))

    def _gps_drop(self):
        c = self.gps_conn
        self.gps_conn = None
        self.gps_poll.unregister(c)
        c.close()
        self.console("GPS replay disconnected")

    def gps_read(self, buf):
        if self.gps_poll is None:
            return 0
        n = 0
        for t in self.gps_poll.ipoll(0):
            obj = t[0]
            if obj is self.gps_srv:
                c, _ = self.gps_srv.accept()
                c.setblocking(False)
                if self.gps_conn is not None:
                    self._gps_drop()  # a new replay takes over
                self.gps_conn = c
                self.gps_poll.register(c, select.POLLIN)
                self.console("GPS replay connected")
            elif obj is self.gps_conn:
                try:
                    n = obj.readinto(buf) or 0
                    if not n:
                        self._gps_drop()  # the replay ended
                except OSError:
                    self._gps_drop()
        g = self.env["gps"]
        if g["jam"] or g["silent"]:
            n = 0  # what the satellites said is lost
            now = ticks_ms()
            if g["jam"] and ticks_diff(now, self.no_fix_ms) >= 1000:
                self.no_fix_ms = now
                n = min(len(_NO_FIX), len(buf))
                buf[:n] = _NO_FIX[:n]
        return n

    def _gps_input(self, req, app):
        """The "gps" command: jam, silent, antenna, speedup."""
        g = self.env["gps"]
        for k in ("jam", "silent", "antenna"):
            if k in req and not isinstance(req[k], bool):
                raise ValueError("%s must be true or false, got %r" % (k, req[k]))
        for k in ("jam", "silent"):
            if k in req:
                g[k] = req[k]
        if "antenna" in req:
            import panel as P
            p = app.panel
            ins = [p.zinput[i] for i in range(p.nz) if p.ztype[i] == P.Z_ANTENNA]
            if not ins:
                raise ValueError("no zone of type antenna in the config")
            for inp in ins:
                self.ohms[inp] = self.alarm if req["antenna"] else self.normal
        if "speedup" in req:
            x = float(req["speedup"])
            if not 0 < x <= 1000:
                raise ValueError("speedup must be above 0 and at most 1000")
            if self.gps_conn is None:
                raise ValueError("no GPS replay connected to %s" % self.gps)
            body = "PGLSIM,SPEEDUP,%s" % x
            c = 0
            for ch in body:
                c ^= ord(ch)
            self.gps_conn.write(("$%s*%02X\r\n" % (body, c)).encode())
        self.save_env()
        return {"ok": True, "jam": g["jam"], "silent": g["silent"],
                "replay": self.gps_conn is not None}

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
            return self._gps_input(req, app)
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
        if self.gps_error:
            # a vehicle nobody can drive must not run on unnoticed (simctl.py)
            self.console(self.gps_error + "; stopping")
            app.stop(_EXIT_NO_GPS)
        import simctl
        return [simctl.serve(app, self)]
