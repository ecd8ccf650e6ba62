"""Free loopback ports for the servers tests start."""

from __future__ import annotations

import random
import socket
import time

# Ports are drawn below the kernel's ephemeral range (Linux: 32768-60999), which is where
# bind(0) and every outgoing connection's source port come from: a port chosen there can be
# taken by some client connection between being chosen and the test's server binding it.
CHOOSE_FROM = range(20000, 32768)


def _bind(port: int) -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (all held until all are chosen)."""
    held: list[socket.socket] = []
    try:
        for port in random.sample(CHOOSE_FROM, 200):
            sock = _bind(port)
            if sock is not None:
                held.append(sock)
                if len(held) == count:
                    return [s.getsockname()[1] for s in held]
        raise AssertionError(f"no {count} free ports among 200 tried in {CHOOSE_FROM}")
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    """One port free on 127.0.0.1 right now."""
    return free_ports(1)[0]


def wait_for_port(port: int, timeout: float = 20) -> None:
    """Return once something accepts connections on 127.0.0.1:port; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")
