"""A dispatch centre's end of the receiver's JSON-lines output (the demo's
police and city endpoints, the forwarding tests' far ends): one JSON
object per line in, ``ACK <id>`` back.  See docs/receiver.md, "Outputs"."""

from __future__ import annotations

import asyncio
import json


class JsonLinesSink:
    """A dispatch centre's end of the JSON-lines output: stores each line's
    object and answers "ACK <id>" (unless ``ack`` is False: then it reads
    and drops the connection, as a far end that crashes mid-message)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ack: bool = True):
        self.host = host
        self.port = port
        self.ack = ack
        self.received: list[dict] = []
        self.connections = 0
        self._server = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader, writer) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                if not self.ack:
                    break
                self.received.append(msg)
                writer.write(b"ACK %d\n" % msg["id"])
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def ids(self) -> list[int]:
        return [m["id"] for m in self.received]
