# Entry point: on a board MicroPython runs main.py at boot; on the unix
# port firmware/sim.py runs `micropython main.py --config ... --state-dir
# ...`.  Exit status 3 asks the sim launcher for a power cycle.

import sys
import hal
import app

code = app.run(hal.board())
if code:
    sys.exit(code)
