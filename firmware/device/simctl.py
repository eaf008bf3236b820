# The simulated board's control socket: the control protocol (control.py,
# docs/simulator.md) on TCP, loopback by default.  Several clients may be
# connected at once; each line is answered on the connection it came in on.

import asyncio
import control


async def _client(app, board, reader, writer):
    try:
        await control.serve(app, board, reader, writer)
    except OSError:
        pass  # the client went away mid-reply
    try:
        writer.close()
        await writer.wait_closed()
    except OSError:
        pass


async def serve(app, board):
    host, port = board.control.rsplit(":", 1)

    def cb(r, w):
        return _client(app, board, r, w)
    srv = await asyncio.start_server(cb, host, int(port))
    board.console("control socket on %s:%s" % (host, port))
    return srv
