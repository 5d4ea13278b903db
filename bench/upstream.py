"""Fallback benchmark upstream: answers every request with a fixed ``200 ok``.

The e2e runner (``bench/e2e/``) prefers a second nginx instance as the upstream
(``return 200 "ok"``), which is what proxy comparisons usually use because it costs the
loaded CPU almost nothing. This server is used only when nginx is absent. It speaks just
enough HTTP/1.1 for bodiless keep-alive GETs: one fixed response per request head, pipelined
heads answered in one write, and the connection closed after a head that asks for it
(`Connection: close`, as the runner's readiness probe sends).

    python bench/upstream.py --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import signal

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
HEAD_END = b"\r\n\r\n"
MAX_PENDING_BYTES = 65536


class FixedResponseProtocol(asyncio.Protocol):
    """Counts complete request heads and answers each with ``RESPONSE``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        buffer = self._pending + data if self._pending else data
        heads = buffer.count(HEAD_END)
        if heads:
            # PERF: one write for all pipelined requests that arrived in this read.
            self._transport.write(RESPONSE * heads)
            if b"connection: close" in buffer.lower():
                self._transport.close()  # after the responses written above
                return
            buffer = buffer[buffer.rfind(HEAD_END) + len(HEAD_END) :]
        if len(buffer) > MAX_PENDING_BYTES:
            self._transport.close()
            return
        self._pending = buffer


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedResponseProtocol, host, port, backlog=1024)
    stop = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
