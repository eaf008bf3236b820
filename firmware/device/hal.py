# Hardware abstraction: the one place that knows which board we run on.
#
# The application (app.py, panel.py, reporter.py) talks only to a Board:
#     path(name)                   a file in the board's state directory
#     config_path                  where the JSON config lives
#     zone_raw(input) -> int       DEOL loop reading, 0..65535 (read_u16)
#     ac_ok() -> bool              mains present
#     battery_mv() -> int          standby battery voltage
#     box_tamper() -> bool         panel enclosure open
#     outputs(siren, strobe, lock, supply)
#                                  drive the sounder, strobe and door lock
#                                  (lock True = locked / bolt thrown) and
#                                  the resettable detector supply (False
#                                  while fire verification resets smoke
#                                  detectors)
#     sounder_raw(k) -> int|None   the siren (0) / strobe (1) line read
#                                  back through an ADC, 0..65535 like a
#                                  zone loop (an EOL on the line); None:
#                                  this board does not supervise it
#     keypad() -> None or (code, action, partition, arg)
#     gps_read(buf) -> int         bytes from the GNSS receiver's UART read
#                                  into buf (a vehicle unit), 0 when none
#                                  came; never waits
#     open_link(i, path_cfg)       a links.* transport for path i (0, 1)
#     net_start(cfg)               bring the network up (Wi-Fi, Ethernet)
#     wdt_feed()                   kick the hardware watchdog
#     console(msg)                 log a line (write_line: the serial
#                                  console / stdout); keep_log(n) keeps
#                                  the last n for "log"
#     tasks(app) -> list           extra coroutines (the control protocol:
#                                  the sim's socket, a board's console in
#                                  test mode)
#     out                          the outputs last written (dict)
#     simulated                    True if the inputs are simulated, i.e.
#                                  set over the control protocol
#                                  (sim_input); a hardware board refuses
#     exit(code)                   the application stopped: 3 = power cycle
#                                  (the sim exits, a board resets)
# and never imports `machine` anywhere else, so the same application runs
# on an ESP32, an RP2040 (Pico W), the unix port (board_sim) and CPython
# (test fakes).

import sys


def board():
    """The board for this port."""
    p = sys.platform
    if p == "esp32":
        import board_esp32
        return board_esp32.Board()
    if p == "rp2":
        import board_rp2
        return board_rp2.Board()
    import board_sim
    return board_sim.Board()


class BaseBoard:
    config_path = "config.json"
    state_dir = "."
    simulated = False
    log_keep = 0  # console lines kept for the control protocol's "log"

    def path(self, name):
        return self.state_dir + "/" + name

    def keep_log(self, n):
        self.log_keep = n
        self.log = []
        self.log_base = 0  # index of self.log[0] since boot

    def console(self, msg):
        self.write_line(msg)
        if self.log_keep:
            log = self.log
            log.append(msg)
            if len(log) > self.log_keep:
                log.pop(0)
                self.log_base += 1

    def write_line(self, msg):
        """Where a console line goes: the serial console / stdout."""
        print(msg)

    def sim_input(self, cmd, req, app):
        """A control-protocol input command (zone, ac, battery, ...)."""
        raise ValueError("%s: a physical input on this board, not settable from the "
                         "console: on a bench the I/O fixture drives it (docs/qa.md)" % cmd)

    def exit(self, code):
        sys.exit(code)

    def wdt_feed(self):
        pass

    def net_start(self, cfg):
        pass

    def keypad(self):
        return None

    def gps_read(self, buf):
        return 0  # no GNSS receiver on this board

    def sounder_raw(self, k):
        return None  # not supervised unless the board reads the line back

    def tasks(self, app):
        return []

    def open_link(self, i, pc):
        import links
        if pc["type"] == "tcp":
            return links.TcpLink(pc["host"], pc["port"])
        if pc["type"] == "udp":
            return links.UdpLink(pc["host"], pc["port"])
        return self.serial_link(pc)

    def serial_link(self, pc):
        raise OSError("no serial path on this board")
