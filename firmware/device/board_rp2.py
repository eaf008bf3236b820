# Raspberry Pi Pico W (RP2040 + CYW43 Wi-Fi), littlefs on flash.
# Only GP26..GP28 are ADC inputs: zones go through the mux on GP26.

import network
import time
import board_mcu


class Board(board_mcu.McuBoard):
    PINS = {"adc_pin": 26, "mux_pins": [2, 3, 4, 5, 6], "siren_pin": 15,
            "strobe_pin": 14, "lock_pin": 13, "ac_pin": 10, "tamper_pin": 11,
            "battery_adc_pin": 27, "battery_divider": 5, "keypad_uart": 1,
            "gps_rx_pin": 1, "gps_tx_pin": 0,
            "wdt_ms": 8000}  # the RP2040 watchdog allows at most 8388 ms

    def net_start(self, cfg):
        wifi = (cfg.get("board") or {}).get("wifi")
        if not wifi:
            return
        wl = network.WLAN(network.STA_IF)
        wl.active(True)
        wl.connect(wifi["ssid"], wifi["password"])
        for _ in range(100):
            if wl.status() == 3:  # CYW43_LINK_UP
                break
            self.wdt_feed()
            time.sleep_ms(100)
        self.console("wifi status %d" % wl.status())
