# ESP32 (e.g. ESP32-DevKitC / WROVER): Wi-Fi station, littlefs on flash.
# ADC1 pins only (ADC2 is unusable while Wi-Fi runs).

import network
import time
import board_mcu


class Board(board_mcu.McuBoard):
    PINS = {"adc_pin": 34, "mux_pins": [25, 26, 27, 14, 12], "siren_pin": 16,
            "strobe_pin": 17, "lock_pin": 18, "ac_pin": 35, "tamper_pin": 39,
            "battery_adc_pin": 36, "battery_divider": 5, "keypad_uart": 2,
            "gps_rx_pin": 32, "gps_tx_pin": 33,
            "wdt_ms": 8000}

    def setup(self, cfg):
        board_mcu.McuBoard.setup(self, cfg)
        import machine
        self.adc.atten(machine.ADC.ATTN_11DB)  # full 0..3.3 V range
        self.batt.atten(machine.ADC.ATTN_11DB)

    def net_start(self, cfg):
        wifi = (cfg.get("board") or {}).get("wifi")
        if not wifi:
            return
        wl = network.WLAN(network.STA_IF)
        wl.active(True)
        if not wl.isconnected():
            wl.connect(wifi["ssid"], wifi["password"])
            for _ in range(100):  # up to 10 s, feeding the watchdog
                if wl.isconnected():
                    break
                self.wdt_feed()
                time.sleep_ms(100)
        self.console("wifi %s" % (wl.ifconfig()[0] if wl.isconnected() else "not connected"))
