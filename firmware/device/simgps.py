# The sim board's GNSS receiver: a vehicle unit's UART as a TCP socket.
#
# board_sim.py imports this only for a config with a "vehicle" section (a
# fixed panel's simulator never loads it).  The socket (--gps, default the
# control port + 1) is what the host's replay (firmware/gpsreplay.py, a
# GPX route as NMEA 0183) connects to, as a serial-to-TCP bridge would
# carry the receiver's UART: its bytes are the UART's.  The control
# protocol's "gps" command jams the receiver (it prints "no fix" once a
# second, the replay's sentences are lost), silences it, trips the
# antenna input, or asks the replay for another speed ($PGLSIM,SPEEDUP:
# the way back on the UART, as a host configures a real receiver with its
# own sentences).  The jam and silence are the board's simulated
# environment (board.env["gps"], kept across a power cycle).

import select
from fwutil import ticks_ms, ticks_diff

# what a jammed receiver prints once a second: no fix
_NO_FIX = b"$GPGGA,,,,,,0,00,,,,,,,*66\r\n$GPRMC,,V,,,,,,,,,,N*53\r\n"


class SimGps:
    def __init__(self, board):
        self.board = board
        self.srv = None  # the listening socket
        self.conn = None  # the replay's connection
        self.poll = None
        self.error = None  # why the socket could not be opened
        self.no_fix_ms = 0
        import socket
        try:
            if board.gps is None:
                h, p = board.control.rsplit(":", 1)
                board.gps = "%s:%d" % (h, int(p) + 1)
            host, port = board.gps.rsplit(":", 1)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(socket.getaddrinfo(host, int(port))[0][-1])
            s.listen(1)
            s.setblocking(False)
        except (OSError, ValueError, IndexError) as e:
            self.error = "GPS socket %s: cannot listen (%s)" % (board.gps, e)
            return
        self.srv = s
        self.poll = select.poll()
        self.poll.register(s, select.POLLIN)
        board.console("GPS receiver: NMEA on %s (firmware/gpsreplay.py --out socket://%s)"
                      % (board.gps, board.gps))

    def _drop(self):
        c = self.conn
        self.conn = None
        self.poll.unregister(c)
        c.close()
        self.board.console("GPS replay disconnected")

    def read(self, buf):
        """hal's gps_read: what the replay sent, into buf; never waits."""
        if self.poll is None:
            return 0
        n = 0
        for t in self.poll.ipoll(0):
            obj = t[0]
            if obj is self.srv:
                c, _ = self.srv.accept()
                c.setblocking(False)
                if self.conn is not None:
                    self._drop()  # a new replay takes over
                self.conn = c
                self.poll.register(c, select.POLLIN)
                self.board.console("GPS replay connected")
            elif obj is self.conn:
                try:
                    n = obj.readinto(buf) or 0
                    if not n:
                        self._drop()  # the replay ended
                except OSError:
                    self._drop()
        g = self.board.env["gps"]
        if g["jam"] or g["silent"]:
            n = 0  # what the satellites said is lost
            now = ticks_ms()
            if g["jam"] and ticks_diff(now, self.no_fix_ms) >= 1000:
                self.no_fix_ms = now
                n = min(len(_NO_FIX), len(buf))
                buf[:n] = _NO_FIX[:n]
        return n

    def command(self, req, app):
        """The control protocol's "gps" command: jam, silent, antenna, speedup."""
        b = self.board
        g = b.env["gps"]
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
                b.ohms[inp] = b.alarm if req["antenna"] else b.normal
        if "speedup" in req:
            x = float(req["speedup"])
            if not 0 < x <= 1000:
                raise ValueError("speedup must be above 0 and at most 1000")
            if self.conn is None:
                raise ValueError("no GPS replay connected to %s" % b.gps)
            body = "PGLSIM,SPEEDUP,%s" % x
            c = 0
            for ch in body:
                c ^= ord(ch)
            self.conn.write(("$%s*%02X\r\n" % (body, c)).encode())
        b.save_env()
        return {"ok": True, "jam": g["jam"], "silent": g["silent"],
                "replay": self.conn is not None}
