"""Embed fastgw in a Python program: start it, look at its addresses, reload, stop.

python examples/embed.py      (with examples/backend.py running on :9001)
"""

from __future__ import annotations

import asyncio
import urllib.request

import uvloop

from fastgw import Gateway

CONFIG = {
    "listen": ["127.0.0.1:0"],  # port 0: any free port; see gw.addresses
    "upstreams": {"backend": {"targets": [{"url": "http://127.0.0.1:9001"}]}},
    "routes": [{"name": "all", "match": {"paths": ["/{*rest}"]}, "upstream": "backend"}],
}


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return f"{response.status} {response.read(200)!r}"


async def main() -> None:
    async with Gateway(CONFIG) as gw:
        host, port = gw.addresses[0]
        print(f"fastgw embedded on http://{host}:{port}")
        print(await asyncio.to_thread(fetch, f"http://{host}:{port}/hello"))
        # Swap the routing plan without dropping anything in flight.
        rewritten = dict(CONFIG, routes=[dict(CONFIG["routes"][0], rewrite="/v2/{rest}")])
        await gw.reload(rewritten)
        print(await asyncio.to_thread(fetch, f"http://{host}:{port}/hello"))


if __name__ == "__main__":
    uvloop.run(main())
