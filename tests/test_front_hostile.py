"""Issue 9's hostile-input fixes still hold behind the HTTPS front: the real Caddy, with the
Caddyfile `stackctl front run` writes, in front of the proxy over real sockets. Deep JSON is
the proxy's 400, an oversized body its 413 (both OpenAI-shaped, passed through), and a
client that never finishes its request head is dropped by Caddy's own `read_header` timeout
(the proxy's header_timeout), so the proxy never even sees it."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.asgi_server import ServerThread
from fakes.ollama_api import FakeOllama

from stackctl.config.model import Config, OpenWebUISection, ProxySection, TlsSection
from stackctl.front import caddyfile
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend
from tests.ports import free_ports

pytestmark = pytest.mark.skipif(
    shutil.which("caddy") is None, reason="needs caddy (.ci/run installs it)"
)
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as ollama:
        ollama.install("gemma3:1b")
        backends = [Backend("ollama", "ollama", ollama.url)]
        app = create_app(ProxySection(max_body_mb=1), backends=backends, api_keys=[])
        with ServerThread(app) as server:
            yield server


class Front:
    """The real Caddy, run as the front's service runs it (minus the unit)."""

    def __init__(self, proxy_port: int, storage: Path):
        [self.port] = free_ports(1)
        config = Config(
            expose=True,
            proxy=ProxySection(port=proxy_port, header_timeout=1.0),
            openwebui=OpenWebUISection(enabled=False),
            tls=TlsSection(port=self.port),
        )
        storage.mkdir(parents=True, exist_ok=True)
        path = storage / "Caddyfile"
        path.write_text(caddyfile(config, storage, ["localhost", "127.0.0.1"]))
        env = {"PATH": "/usr/bin:/bin", "HOME": str(storage)}
        env |= {"XDG_DATA_HOME": str(storage / "xdg-data"), "XDG_CONFIG_HOME": str(storage)}
        with (storage / "caddy.log").open("wb") as log:
            self.process = subprocess.Popen(
                ["caddy", "run", "--config", str(path), "--adapter", "caddyfile"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.root = storage / "pki/authorities/local/root.crt"
        self.url = f"https://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while not self.ready():
            assert self.process.poll() is None, (storage / "caddy.log").read_text()
            assert time.monotonic() < deadline, "Caddy never served HTTPS"
            time.sleep(0.1)
        self.tls = ssl.create_default_context(cafile=self.root)

    def ready(self) -> bool:
        if not self.root.exists():
            return False
        try:
            with httpx.Client(verify=ssl.create_default_context(cafile=self.root)) as client:
                return client.get(self.url + "/health").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def front(proxy: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    served = Front(proxy.port, tmp_path_factory.mktemp("caddy"))
    yield served
    served.stop()


def post(front: Front, body: bytes) -> httpx.Response:
    with httpx.Client(verify=front.tls, timeout=30) as client:
        headers = {"content-type": "application/json"}
        return client.post(front.url + CHAT, content=body, headers=headers)


def test_deep_json_is_the_proxys_400_through_the_front(front: Front) -> None:
    reply = post(front, b"[" * 10000)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_json"
    assert reply.headers["content-type"].startswith("application/json")


def test_an_oversized_body_is_the_proxys_413_through_the_front(front: Front) -> None:
    big = b'{"model": "gemma3:1b", "messages": [], "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    reply = post(front, big)
    assert reply.status_code == 413
    assert reply.json()["error"]["message"] == (
        "The request body is larger than the proxy's limit of 1 MiB (proxy.max_body_mb)."
    )


def test_half_sent_heads_are_closed_by_the_front(front: Front) -> None:
    half = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    conns = []
    for _ in range(20):
        raw = socket.create_connection(("127.0.0.1", front.port), timeout=5)
        conn = front.tls.wrap_socket(raw, server_hostname="localhost")
        conn.sendall(half)
        conns.append(conn)
    started = time.monotonic()
    for conn in conns:
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass  # reset: closed all the same
        conn.close()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    waited = time.monotonic() - started
    assert waited < 4, f"half-sent heads still open after {waited:.1f} s"
    assert post(front, b"[").status_code == 400  # and the front still serves everyone else
