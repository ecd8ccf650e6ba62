"""Connections that never finish their request head, too many connections, and requests the
HTTP parser refuses, against `stackctl proxy serve` itself (the process the service runs).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.ollama_api import FakeOllama

from tests.ports import free_port

HALF_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b")
        yield fake


def start(tmp_path: Path, ollama: FakeOllama, settings: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = tmp_path / "stack.yaml"
    config.write_text(
        "backend: ollama\nproxy:\n"
        f"  port: {port}\n"
        f"  connections: [{{name: ollama, mode: ollama, base_url: '{ollama.url}'}}]\n" + settings
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackctl", "--config", str(config), "proxy", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STACKCTL_PLATFORM": "linux"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/health")
            return proc, url
        except httpx.ConnectError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.communicate()[1]) from None
            time.sleep(0.05)


@pytest.fixture
def served(tmp_path, ollama) -> Iterator:
    procs = []

    def serve(settings: str) -> str:
        proc, url = start(tmp_path, ollama, settings)
        procs.append(proc)
        return url

    yield serve
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert "Traceback" not in err


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket, timeout: float) -> bytes | None:
    """Everything until the server closes the connection; None if it is still open."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    return data


def read_answer(sock: socket.socket, timeout: float = 10) -> bytes:
    """One whole JSON answer on a connection that stays open (keep-alive)."""
    sock.settimeout(timeout)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, f"closed before the answer was whole: {answer!r}"
        answer += chunk
    return answer


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_half_sent_heads_are_closed_after_the_header_timeout(served):
    url = served("  header_timeout: 1\n")
    socks = [connect(url) for _ in range(50)]
    for sock in socks:
        sock.sendall(HALF_HEAD)
    silent = connect(url)  # sends nothing at all
    slow = connect(url)  # a byte now and then, never a whole head
    started = time.monotonic()
    try:
        for byte in HALF_HEAD * 10:
            slow.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:  # closed by the proxy, as it should be
        pass
    assert time.monotonic() - started < 2.5
    for sock in [*socks, silent]:
        answer = read_all(sock, timeout=3)
        assert answer is not None, "still open"
        if answer:
            status, body = status_and_json(answer)
            assert status == 408
            assert body["error"]["code"] == "request_timeout"
        sock.close()
    slow.close()
    assert time.monotonic() - started < 4
    assert httpx.get(url + "/health").status_code == 200


def test_a_half_sent_head_after_a_whole_request_is_closed_after_the_header_timeout(served):
    """The deadline holds for every request of a keep-alive connection, not just its first."""
    url = served("  header_timeout: 1\n")
    sock = connect(url)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_answer(sock).startswith(b"HTTP/1.1 200")
    time.sleep(0.6)  # the connection's first deadline check passes while it is idle
    sock.sendall(HALF_HEAD)
    sent = time.monotonic()
    answer = read_all(sock, timeout=3)
    waited = time.monotonic() - sent
    sock.close()
    assert answer is not None, "still open"
    status, body = status_and_json(answer)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert 0.9 < waited < 1.25 + 0.5


CHAT_BODY = json.dumps(
    {"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]}
).encode()


def chat_head(length: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_a_body_that_stops_short_is_closed_after_the_header_timeout(served):
    """A body that stops short of its Content-Length held the connection, and its request,
    for good (issue 9's left-out: the head had a deadline, the body none)."""
    url = served("  header_timeout: 1\n")
    sock = connect(url)
    sock.sendall(chat_head(len(CHAT_BODY)) + CHAT_BODY[:10])
    sent = time.monotonic()
    answer = read_all(sock, timeout=4)
    waited = time.monotonic() - sent
    sock.close()
    assert answer is not None, "still open"
    status, body = status_and_json(answer)
    assert status == 408
    assert body["error"]["message"] == (
        "The request body stopped arriving: nothing came for 1 s (proxy.header_timeout)."
    )
    assert 0.9 < waited < 1.25 + 0.5
    assert httpx.get(url + "/health").status_code == 200


def test_a_slow_body_that_keeps_coming_is_answered(served):
    """The deadline is for each pause, not the whole body: a slow link is not cut."""
    url = served("  header_timeout: 1\n")
    sock = connect(url)
    sock.sendall(chat_head(len(CHAT_BODY)))
    started = time.monotonic()
    for start in range(0, len(CHAT_BODY), 8):
        sock.sendall(CHAT_BODY[start : start + 8])
        time.sleep(0.3)
    assert time.monotonic() - started > 2  # well past the deadline in all
    answer = read_answer(sock)
    sock.close()
    status, body = status_and_json(answer)
    assert status == 200, body
    assert body["choices"][0]["message"]["role"] == "assistant"


def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timeout(served):
    url = served("  header_timeout: 1\n")
    with httpx.Client(base_url=url) as client:
        assert client.get("/health").status_code == 200
        time.sleep(1.5)
        assert client.get("/health").status_code == 200


def test_connections_past_the_cap_get_an_openai_shaped_503(served):
    url = served("  max_connections: 20\n")
    holders = [connect(url) for _ in range(25)]
    for sock in holders:
        sock.sendall(HALF_HEAD)
    time.sleep(0.3)
    refused = httpx.get(url + "/v1/models")
    assert refused.status_code == 503
    assert refused.json()["error"] == {
        "message": "The proxy is serving its maximum of 20 connections (proxy.max_connections): "
        "try again in a moment.",
        "type": "api_error",
        "param": None,
        "code": "too_many_connections",
    }
    for sock in holders:
        sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(url + "/v1/models").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize(
    "request_line", [b"get /health HTTP/1.1", b"FROB /health HTTP/1.1", b"GET  HTTP/1.1"]
)
def test_requests_the_parser_refuses_get_an_openai_shaped_400(served, request_line):
    url = served("")
    sock = connect(url)
    sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
    answer = read_all(sock, timeout=5)
    sock.close()
    assert answer is not None
    status, body = status_and_json(answer)
    assert status == 400
    assert body == {
        "error": {
            "message": "The proxy could not parse this HTTP request: send HTTP/1.1 with an "
            "upper-case method such as GET or POST.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_http_request",
        }
    }
