# Entry point: on a board MicroPython runs main.py at boot; on the unix
# port firmware/sim.py runs `micropython main.py --config ... --state-dir
# ...`.  Exit status 3 asks the sim launcher for a power cycle.

import hal
import app

board = hal.board()
code = app.run(board)
if code:
    board.exit(code)  # the sim exits (3: the launcher restarts it), a board resets
