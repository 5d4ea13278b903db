"""A small demo upstream for the example gateway (stdlib only).

Answers every request with JSON describing what it received, so the effect of routing,
rewrites and the headers fastgw adds is visible:

    python examples/backend.py --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import json


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0"))
    return await reader.readexactly(length) if length else b""


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                break
            method, target, version = request_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await _read_body(reader, headers)
            payload = (
                json.dumps(
                    {
                        "service": "example-backend",
                        "method": method,
                        "path": target,
                        "headers": headers,
                        "body_bytes": len(body),
                    },
                    indent=2,
                ).encode()
                + b"\n"
            )
            head = (
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\n\r\n"
            ).encode()
            writer.write(head + (b"" if method == "HEAD" else payload))
            await writer.drain()
            if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(handle, host, port)
    print(f"example backend listening on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
