# Common part of the microcontroller boards (ESP32, RP2040).
#
# Zones: up to 16 DEOL loops through a CD4067 analog multiplexer into one
# ADC pin (or 32 with two muxes selected by a fifth select line), each loop
# pulled up by `eol.pullup_ohms` to the ADC reference.  Pins come from the
# config's "board" object; the defaults are in the board modules.
#
# Sounder supervision (optional, "board": {"siren_sense": N, "strobe_sense":
# M}): the siren and strobe lines, each with an EOL resistor, read back on
# mux inputs N and M; a "supply_pin" switches the resettable detector
# supply (fire verification).
#
# GNSS receiver (a vehicle unit, docs/mobile.md): NMEA 0183 on a UART,
# "board": {"gps_uart": N} (and "gps_baud", default 9600; "gps_rx_pin",
# "gps_tx_pin", defaults in the board modules); without "gps_uart" the
# unit has no receiver and reports its fix lost.
#
# Keypad: a keypad/reader module on a UART sending one line per entry,
# "CODE ACTION PARTITION [ARG]\n", e.g. "1234 disarm 1" (ACTION as in
# panel.ACTIONS).  A matrix keypad driver would produce the same tuples.
#
# Console test mode ("test_mode": true in the config, bench only): the
# control protocol (control.py) on the console, sys.stdin/sys.stdout (USB
# serial or the console UART).  Keypad, state, outputs, log, clock, gc,
# ping and power_cycle (machine.reset) work; the electrical inputs (zone
# loops, mains, battery, lid tamper, network paths) are refused, since on
# a bench the I/O fixture drives them at the terminals (docs/qa.md).

import machine
import time
import hal
from fwutil import const

_SETTLE_US = const(20)  # mux output settling before the ADC samples
_TEST_LOG_LINES = const(32)  # console lines kept for "log" in test mode (RAM)
_RESET_DRAIN_MS = const(100)  # let the console send the last reply before a reset


class McuBoard(hal.BaseBoard):
    PINS = {}

    def __init__(self, state_dir="/data", config_path="/config.json"):
        self.state_dir = state_dir
        self.config_path = config_path
        try:
            import os
            os.mkdir(self.state_dir)
        except OSError:
            pass
        self.pins = dict(self.PINS)
        self._wdt = None
        self._kbuf = b""
        self.sense = (None, None)  # sounder read-back mux inputs (setup)
        self.out = {"siren": False, "strobe": False, "lock": True, "supply": True}

    def setup(self, cfg):
        """Called by app.py once the config is known."""
        if cfg.get("test_mode"):
            self.keep_log(_TEST_LOG_LINES)
        self.pins.update(cfg.get("board") or {})
        P = self.pins
        self.adc = machine.ADC(machine.Pin(P["adc_pin"]))
        self.mux = [machine.Pin(n, machine.Pin.OUT) for n in P["mux_pins"]]
        self.siren = machine.Pin(P["siren_pin"], machine.Pin.OUT, value=0)
        self.strobe = machine.Pin(P["strobe_pin"], machine.Pin.OUT, value=0)
        self.lock = machine.Pin(P["lock_pin"], machine.Pin.OUT, value=1)
        # optional: the resettable detector supply (smoke detectors), and
        # the siren/strobe lines read back on two mux inputs (an EOL on
        # each line; the panel supervises them, panel.sounder)
        self.supply = None
        if P.get("supply_pin") is not None:
            self.supply = machine.Pin(P["supply_pin"], machine.Pin.OUT, value=1)
        self.sense = (P.get("siren_sense"), P.get("strobe_sense"))
        self.ac = machine.Pin(P["ac_pin"], machine.Pin.IN, machine.Pin.PULL_UP)
        self.tamper = machine.Pin(P["tamper_pin"], machine.Pin.IN, machine.Pin.PULL_UP)
        self.batt = machine.ADC(machine.Pin(P["battery_adc_pin"]))
        self.keyuart = None
        if P.get("keypad_uart") is not None:
            self.keyuart = machine.UART(P["keypad_uart"], 9600)
        self.gpsuart = None
        if P.get("gps_uart") is not None:
            # rxbuf: a second of NMEA at 9600 baud, whatever the port's default
            self.gpsuart = machine.UART(P["gps_uart"], P.get("gps_baud", 9600),
                                        rx=P["gps_rx_pin"], tx=P["gps_tx_pin"], rxbuf=1024)
        self._wdt = machine.WDT(timeout=P.get("wdt_ms", 8000))

    def zone_raw(self, inp):
        for b in range(len(self.mux)):
            self.mux[b].value((inp >> b) & 1)
        time.sleep_us(_SETTLE_US)
        return self.adc.read_u16()

    def ac_ok(self):
        return self.ac.value() == 0  # opto-coupler pulls low while mains is present

    def battery_mv(self):
        # divider ratio and 3.3 V reference: battery_divider x 3300 mV full
        # scale, raw * 3300 * divider // 65535 in two steps: the product
        # passes 2**30 near full scale, a long integer per scan on 32-bit
        # ports (fwutil.py)
        mv = self.batt.read_u16() * 3300  # mV at the pin, times 65535
        div = self.pins.get("battery_divider", 5)
        return mv // 65535 * div + mv % 65535 * div // 65535

    def box_tamper(self):
        return self.tamper.value() == 1  # switch opens when the lid lifts

    def outputs(self, siren, strobe, lock, supply=True):
        self.siren.value(1 if siren else 0)
        self.strobe.value(1 if strobe else 0)
        self.lock.value(1 if lock else 0)
        if self.supply is not None:
            self.supply.value(1 if supply else 0)
        o = self.out
        o["siren"] = siren
        o["strobe"] = strobe
        o["lock"] = lock
        o["supply"] = supply

    def sounder_raw(self, k):
        inp = self.sense[k]
        return None if inp is None else self.zone_raw(inp)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def keypad(self):
        u = self.keyuart
        if u is None or not u.any():
            return None
        data = u.read(64)  # None on a read timeout, even after any()
        if data:
            self._kbuf += data
        if len(self._kbuf) > 128:  # garbage without newline: drop it
            self._kbuf = b""
        i = self._kbuf.find(b"\n")
        if i < 0:
            return None
        line = self._kbuf[:i].decode().split()
        self._kbuf = self._kbuf[i + 1:]
        if len(line) < 3:
            return None
        try:
            return (line[0], line[1], int(line[2]), int(line[3]) if len(line) > 3 else 0)
        except ValueError:
            return None

    def gps_read(self, buf):
        u = self.gpsuart
        if u is None:
            return 0
        n = u.any()
        if not n:
            return 0
        got = u.readinto(buf, min(n, len(buf)))  # only what is there: no wait
        return got or 0

    def serial_link(self, pc):
        import links
        return links.UartLink(machine.UART(pc["uart"], pc["baud"]))

    def tasks(self, app):
        if not app.test_mode:
            return []
        import control
        return [control.console(app, self)]

    def reset(self):
        machine.reset()

    def exit(self, code):
        # a board has nowhere to exit to: power_cycle (3) and anything else
        # restart the firmware
        time.sleep_ms(_RESET_DRAIN_MS)
        machine.reset()
