# The simulated board's control socket: the control protocol (control.py,
# docs/simulator.md) on TCP, loopback by default.  Several clients may be
# connected at once; each line is answered on the connection it came in on.
#
# A simulated panel that nobody can drive must not run on unnoticed: when
# the socket cannot be opened (the port is taken by another panel, a bad
# address), the console says why and the VM ends with status 4, which the
# launcher (firmware/sim.py NO_CONTROL) reports.

import asyncio
import control
from fwutil import const

_EXIT_NO_CONTROL = const(4)  # firmware/sim.py NO_CONTROL


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


def _why(e):
    import errno
    n = e.args[0] if e.args else 0
    if n == errno.EADDRINUSE:
        return "the port is taken (EADDRINUSE: another simulated panel?)"
    if n == errno.EACCES:
        return "not allowed (EACCES: a port below 1024?)"
    name = errno.errorcode.get(n)
    return name if name else "error %s (not an address of this machine?)" % (n,)


async def serve(app, board):
    host, port = board.control.rsplit(":", 1)

    def cb(r, w):
        return _client(app, board, r, w)
    try:
        srv = await asyncio.start_server(cb, host, int(port))
    except (OSError, ValueError, IndexError) as e:
        # getaddrinfo of a bad host raises OSError (or IndexError on no result)
        board.console("control socket %s:%s: cannot listen: %s; stopping" % (
            host, port, _why(e) if isinstance(e, OSError) else "bad address"))
        app.stop(_EXIT_NO_CONTROL)
        return None
    board.console("control socket on %s:%s" % (host, port))
    return srv
