"""Health checks over real sockets: each service's idea of healthy, hangs, waits with backoff,
and `status` adding it up (exit 0 / 3 / 1) without waiting on a hung service for long."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stackctl import health
from stackctl.config import Config
from stackctl.services.base import ServiceState
from stackctl.stack import Service, Stack, resolve_stack
from stackctl.status import collect, problems
from tests.fakes.ollama_api import FakeOllama
from tests.fakes.openai_backend import FakeOpenAIBackend
from tests.ports import free_port, wait_for_port


@pytest.fixture
def ollama(tmp_path: Path) -> Iterator[FakeOllama]:
    with FakeOllama(tmp_path / "ollama") as server:
        server.install("gemma3:1b")
        yield server


class Hanging:
    """A port that accepts connections and never answers; counts how many are open at once."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.open = 0
        self.most_open = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn = self.sock.accept()[0]
            except OSError:
                continue
            with self.lock:
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            thread = threading.Thread(target=self._hold, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _hold(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        with conn:
            while not self.stop.is_set():
                try:
                    if conn.recv(4096) == b"":
                        break  # the client hung up
                except TimeoutError:
                    continue
                except OSError:
                    break
        with self.lock:
            self.open -= 1

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.sock.close()


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    server = Hanging()
    yield server
    server.close()


@pytest.fixture
def openwebui(fake_bin) -> Iterator[int]:
    """The fake open-webui, started as its console script would be."""
    port = free_port()
    child = subprocess.Popen(
        [str(fake_bin.bin / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    yield port
    child.terminate()
    child.wait()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_ollama_is_healthy_with_models_and_version(ollama: FakeOllama) -> None:
    result = health.check(Service("ollama", port_of(ollama.url), "127.0.0.1"))
    assert result.ok and result.detail == "ok"
    assert result.models == ["gemma3:1b"] and result.version == "0.32.3"
    assert result.url == f"{ollama.url}/api/tags"
    assert result.latency_ms is not None and result.latency_ms >= 0


def test_vllm_needs_health_then_models() -> None:
    with FakeOpenAIBackend(["gemma3:27b"]) as vllm:
        result = health.check(Service("vllm", port_of(vllm.url), "127.0.0.1"))
        assert result.ok and result.models == ["gemma3:27b"] and result.version == "0.11.0"
        assert [r["path"] for r in vllm.requests()] == ["/health", "/v1/models", "/version"]


def test_proxy_check_sends_the_key(tmp_path: Path) -> None:
    with FakeOpenAIBackend(["gemma3:1b"], api_key="sk-secret-1") as server:
        service = Service("proxy", port_of(server.url), "127.0.0.1")
        assert health.check(service).detail == "HTTP 401"
        result = health.check(service, api_key="sk-secret-1")
        assert result.ok and result.models == ["gemma3:1b"]


def test_openwebui_is_healthy_when_it_says_status_true(openwebui: int) -> None:
    result = health.check(Service("openwebui", openwebui, "127.0.0.1"))
    assert result.ok and result.version == "0.6.5"


def test_refused_and_hanging_are_named(hanging: Hanging) -> None:
    refused = health.check(Service("ollama", free_port(), "127.0.0.1"))
    assert not refused.ok and refused.detail == "connection refused"
    hung = health.check(Service("openwebui", hanging.port, "127.0.0.1"), timeout=0.3)
    assert not hung.ok and hung.detail == "no answer (timed out)"


def test_check_all_runs_at_once(ollama: FakeOllama, hanging: Hanging) -> None:
    services = [Service("openwebui", hanging.port, "127.0.0.1")] * 3
    services.append(Service("ollama", port_of(ollama.url), "127.0.0.1"))
    results = health.check_all(services, timeout=0.5)
    assert [r.ok for r in results] == [False, False, False, True]
    assert hanging.most_open == 3  # the three hung checks waited side by side, not in turn


def test_wait_reports_what_it_waits_for_then_succeeds(tmp_path: Path) -> None:
    port = free_port()
    notes: list[str] = []
    server = FakeOllama(tmp_path / "late", port=port)
    timer = threading.Timer(0.5, server.start)
    timer.start()
    try:
        result = health.wait_healthy(
            Service("ollama", port, "127.0.0.1"), report=notes.append, budget=20
        )
    finally:
        timer.join()
        server.stop()
    assert result.ok
    assert notes[0].startswith(
        f"waiting for Ollama at http://127.0.0.1:{port}/api/tags: connection refused (0s of up to 20s"
    )


def test_wait_gives_up_after_its_budget_or_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    service = Service("openwebui", free_port(), "127.0.0.1")
    with pytest.raises(health.NotHealthy) as err:
        health.wait_healthy(service, budget=0.3)
    assert err.value.health.detail == "connection refused" and err.value.reason == ""
    with pytest.raises(health.NotHealthy) as err:
        health.wait_healthy(service, budget=30, gave_up=lambda: "its service failed (exit-code)")
    assert err.value.reason == "its service failed (exit-code)"
    monkeypatch.setenv("STACKCTL_HEALTH_BUDGET", "5")
    assert health.budget_for("openwebui") == 5 and health.budget_for("proxy") == 5
    monkeypatch.delenv("STACKCTL_HEALTH_BUDGET")
    assert health.budget_for("openwebui") == 600 and health.budget_for("vllm") == 1200


class StubManager:
    """Only what status reads from a service manager: what is installed and its state."""

    def __init__(self, states: dict[str, str]):
        self.states = states

    def installed_services(self) -> list[str]:
        return [name for name, state in self.states.items() if state != "not-installed"]

    def status(self, services: list[str]) -> list[ServiceState]:
        since = datetime.now(timezone.utc) - timedelta(minutes=5)
        return [
            ServiceState(
                name,
                f"stackctl-{name}.service",
                self.states[name] != "not-installed",
                self.states[name],
                pid=os.getpid() if self.states[name] == "active" else None,
                since=since if self.states[name] == "active" else None,
                restarts=0,
            )
            for name in services
        ]


def scope_for(ollama_port: int, webui_port: int, states: dict[str, str]) -> Stack:
    config = Config(backend="ollama")
    config.proxy.enabled = False
    config.ollama.port, config.openwebui.port = ollama_port, webui_port
    stack = resolve_stack(config)
    assert stack.services == (
        Service("ollama", ollama_port, "127.0.0.1"),
        Service("openwebui", webui_port, "127.0.0.1"),
    )
    stack.__dict__["manager"] = StubManager(states)  # seeds the cached_property
    return stack


def test_status_all_healthy_is_exit_0(ollama: FakeOllama, openwebui: int) -> None:
    scope = scope_for(port_of(ollama.url), openwebui, {"ollama": "active", "openwebui": "active"})
    status = collect(scope)
    assert status.exit_code == 0 and status.healthy
    ollama_row = status.rows[0]
    assert ollama_row.models == ["gemma3:1b"] and ollama_row.pid == os.getpid()
    assert ollama_row.uptime_seconds is not None and 299 <= ollama_row.uptime_seconds < 400
    assert problems(status) == []


def test_status_with_a_hanging_service_is_degraded_quickly(
    ollama: FakeOllama, hanging: Hanging
) -> None:
    scope = scope_for(
        port_of(ollama.url), hanging.port, {"ollama": "active", "openwebui": "active"}
    )
    status = collect(scope, timeout=0.5)
    assert status.exit_code == 3
    assert status.to_dict()["services"][1]["health"] == "no answer (timed out)"
    assert problems(status) == [
        f"Open WebUI runs but does not answer (no answer (timed out) at "
        f"http://127.0.0.1:{hanging.port}): `stackctl logs openwebui`"
    ]


def test_status_with_a_stopped_service_says_how_to_start_it(ollama: FakeOllama) -> None:
    port = free_port()
    scope = scope_for(port_of(ollama.url), port, {"ollama": "active", "openwebui": "failed"})
    status = collect(scope)
    assert status.exit_code == 3
    assert problems(status) == [
        "Open WebUI is failed: `stackctl logs openwebui` shows why; "
        "`stackctl restart openwebui` starts it again"
    ]


def test_status_of_nothing_installed_is_an_error() -> None:
    scope = scope_for(
        free_port(), free_port(), {"ollama": "not-installed", "openwebui": "not-installed"}
    )
    status = collect(scope)
    assert status.exit_code == 1 and not status.installed
    assert status.message == "the stack is not installed: run `stackctl up`"
    assert problems(status) == []
