"""Every listening socket fastgw opens, and how each configured listener is served.

One process and a supervisor's workers open their sockets here alike: `open_socket` binds
and listens (with SO_REUSEPORT for a supervisor, which opens one socket per worker and
address), `refuse_if_served` is the supervisor's probe, and the admin API's socket comes from
here too. How a listener's connections are accepted is an `Endpoint`: plain TCP
(`TcpEndpoint`) is the only kind today; a TLS listener will be another endpoint serving the
same sockets with its context. `endpoint_for` is the one place that chooses.

SO_REUSEPORT lets any process of the same user join a port's group, so a supervisor probes
first: a socket bound without SO_REUSEPORT (with SO_REUSEADDR, so the TIME_WAIT connections
of an earlier run do not count) is refused by the kernel exactly while any socket listens on
an overlapping address, whatever its options.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Sequence
from typing import Protocol

from fastgw.config import Listener, parse_listen_address
from fastgw.errors import GatewayError

__all__ = [
    "LISTEN_BACKLOG",
    "Endpoint",
    "ProtocolFactory",
    "TcpEndpoint",
    "endpoint_for",
    "open_listeners",
    "open_socket",
    "refuse_if_served",
    "shown_address",
]

# Accept queue of every listening socket.
LISTEN_BACKLOG = 1024

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class Endpoint(Protocol):
    """How the connections of one configured listener are accepted."""

    async def serve(
        self, sock: socket.socket, protocol_factory: ProtocolFactory
    ) -> asyncio.AbstractServer:
        """Accept connections on `sock` (bound and listening, opened here or inherited by a
        worker), each handled by a protocol from `protocol_factory`, on the running loop."""
        ...


class TcpEndpoint:
    """Plain TCP: the core's protocol reads the connection's bytes as they arrive."""

    async def serve(
        self, sock: socket.socket, protocol_factory: ProtocolFactory
    ) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(protocol_factory, sock=sock, backlog=LISTEN_BACKLOG)


def endpoint_for(listener: Listener) -> Endpoint:
    """The endpoint that serves `listener`."""
    return TcpEndpoint()


def shown_address(host: str, port: int) -> str:
    """host:port as written in a config and in messages ([host]:port for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _cannot_listen(address: str, exc: OSError) -> GatewayError:
    if exc.errno == errno.EADDRINUSE:
        return GatewayError(
            f"cannot listen on {address}: address already in use (another process listens "
            "there; a second gateway never joins a running one's port)"
        )
    return GatewayError(f"cannot listen on {address}: {exc.strerror or exc}")


def open_socket(host: str, port: int, address: str, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port and listening; GatewayError naming `address` (as the
    config wrote it) when it cannot be. `reuse_port` sets SO_REUSEPORT: several sockets of
    this process share the port on purpose and the kernel spreads connections among them."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise _cannot_listen(address, exc) from exc
    return sock


def open_listeners(
    listeners: Sequence[Listener], *, reuse_port: bool = False
) -> list[socket.socket]:
    """One listening socket per configured listener, in order; none if one cannot open."""
    sockets: list[socket.socket] = []
    try:
        for listener in listeners:
            host, port = parse_listen_address(listener.address)
            sockets.append(open_socket(host, port, listener.address, reuse_port=reuse_port))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def refuse_if_served(host: str, port: int, address: str) -> None:
    """Raise GatewayError if any socket listens on host:port (or an overlapping address).

    The probe has SO_REUSEADDR but not SO_REUSEPORT: Linux then refuses the bind exactly
    when a listening socket overlaps it, and allows it over connections in TIME_WAIT.
    """
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if probe.family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise _cannot_listen(address, exc) from exc
    finally:
        probe.close()
