#!/usr/bin/env python3
"""What the HTTPS front (Caddy) adds to a request, measured against the proxy direct.

    python bench/front_latency.py [--rounds 10] [--seconds 2] [--markdown]

Starts bench/fake_ollama.js, `python -m stackctl proxy serve` in front of it, and the real
Caddy with the Caddyfile `stackctl front run` writes (its local CA, a certificate for
127.0.0.1) in front of the proxy. Then wrk (one connection, kept alive, so the TLS handshake
is paid once, as a client with keep-alive pays it) POSTs a small non-streamed chat, in
alternating rounds: the proxy direct over HTTP, then through the front over HTTPS. Prints
the medians of each round's p50 and p99 and what the front adds. A new TLS connection's
handshake is timed apart (Python's ssl, 200 handshakes, median).

Needs caddy, wrk and node (proxy_bench.py installs wrk with apt-get when missing). Loopback
only; bounded in time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proxy_bench import HERE, free_port, need_tools, wait_http

sys.path.insert(0, str(HERE.parent))
from stackctl.config.model import Config, OpenWebUISection, ProxySection, TlsSection
from stackctl.front import caddyfile

SCALE = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def latency(url: str, seconds: int) -> tuple[float, float]:
    """(p50, p99) in ms of wrk at concurrency 1 against url (https is not verified)."""
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", "-s",
         str(HERE / "wrk/proxy_chat.lua"), url],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        sys.exit(f"wrk saw error responses from {url}:\n{out}")
    found = {
        p: float(v) * SCALE[unit] for p, v, unit in re.findall(r"(50|99)%\s+([\d.]+)(us|ms|s)", out)
    }
    return found["50"], found["99"]


def handshake_ms(port: int, context: ssl.SSLContext, count: int = 200) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args()
    need_tools()
    if shutil.which("caddy") is None:
        sys.exit("caddy is needed (apt-get install caddy, brew install caddy)")
    fake_port, proxy_port, front_port = free_port(), free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="front-bench-"))
    config = work / "stack.yaml"
    config.write_text(
        f"backend: ollama\nproxy:\n  port: {proxy_port}\n  connections:\n"
        f"    - {{name: ollama, mode: ollama, base_url: 'http://127.0.0.1:{fake_port}'}}\n"
    )
    front = Config(
        expose=True,
        proxy=ProxySection(port=proxy_port),
        openwebui=OpenWebUISection(enabled=False),
        tls=TlsSection(port=front_port),
    )
    storage = work / "caddy"
    storage.mkdir()
    (storage / "Caddyfile").write_text(caddyfile(front, storage, ["localhost", "127.0.0.1"]))
    env = {**os.environ, "STACKCTL_HOME": str(work)}
    caddy_env = {**env, "XDG_DATA_HOME": str(storage), "XDG_CONFIG_HOME": str(storage)}
    processes = [
        subprocess.Popen(["node", str(HERE / "fake_ollama.js"), str(fake_port)],
                         stdout=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "stackctl", "--config", str(config), "proxy",
                          "serve"], stdout=subprocess.DEVNULL, env=env),
        subprocess.Popen(["caddy", "run", "--config", str(storage / "Caddyfile"), "--adapter",
                          "caddyfile"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=caddy_env),
    ]  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{fake_port}/api/tags")
        wait_http(f"http://127.0.0.1:{proxy_port}/v1/models")
        root = storage / "pki/authorities/local/root.crt"
        deadline = time.monotonic() + 20
        while not root.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        context = ssl.create_default_context(cafile=root)
        direct, front_rounds = [], []
        for _ in range(args.rounds):
            direct.append(
                latency(f"http://127.0.0.1:{proxy_port}/v1/chat/completions", args.seconds)
            )
            front_rounds.append(
                latency(f"https://127.0.0.1:{front_port}/v1/chat/completions", args.seconds)
            )
        handshake = handshake_ms(front_port, context)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    report(direct, front_rounds, handshake, args.markdown)


def report(direct: list, front: list, handshake: float, markdown: bool) -> None:
    d50, d99 = (statistics.median(r[i] for r in direct) for i in (0, 1))
    f50, f99 = (statistics.median(r[i] for r in front) for i in (0, 1))
    rows = [
        ("p50 latency, concurrency 1", d50, f50),
        ("p99 latency, concurrency 1", d99, f99),
    ]
    if markdown:
        print("| measure | proxy direct (HTTP) | through the front (HTTPS) | added |")
        print("|---|---|---|---|")
        for name, a, b in rows:
            print(f"| {name} | {a:.3f} ms | {b:.3f} ms | **{b - a:+.3f} ms** |")
        print(f"| new TLS connection (handshake, median of 200) | | {handshake:.3f} ms | |")
    else:
        for name, a, b in rows:
            print(f"{name}: direct {a:.3f} ms, front {b:.3f} ms, added {b - a:+.3f} ms")
        print(f"TLS handshake: {handshake:.3f} ms")
    print("raw rounds (p50, p99 ms): direct", direct, "front", front)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
