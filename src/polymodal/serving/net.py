"""The server's listening socket, bound before anything is announced or loaded. Imports nothing heavy, so that
``polymodal serve`` finds a busy port in a fraction of a second."""

from __future__ import annotations

import errno
import socket

from ..errors import ConfigError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound before the server is announced: a busy port is a clear error
    (exit 2) instead of a "serving on ..." line followed by uvicorn's exit 3."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on host '{host}': {e.strerror} (--host)") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a TIME_WAIT port is free
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (another server?): stop that process or choose another "
                "port with --port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror} (--host/--port)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
