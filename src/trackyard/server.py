"""The HTTP server trackyard runs on (uvicorn with uvloop and httptools), set up in one place.

The benchmark's ceiling apps run through the same functions, so they are measured on the
very same server configuration.
"""

from __future__ import annotations

import socket


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen; port 0 lets the kernel pick a free port (read it from getsockname)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(
    app: str, sock: socket.socket, *, workers: int = 1, log_level: str = "warning", factory: bool = False
) -> None:
    """Serve the ASGI app named by the import string ``app`` on ``sock`` until SIGTERM or SIGINT."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        app,
        factory=factory,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
