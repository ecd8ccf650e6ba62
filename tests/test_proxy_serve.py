"""`stackctl proxy serve`: the command the proxy service runs, started for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from stackctl.proxy.server import is_loopback
from tests.fakes.ollama_api import FakeOllama
from tests.ports import free_port


@pytest.fixture
def ollama(tmp_path: Path):
    with FakeOllama(tmp_path / "ollama") as fake:
        fake.install("gemma3:27b")
        yield fake


def write_config(path: Path, ollama_url: str, port: int, extra: str = "") -> Path:
    path.write_text(
        "backend: ollama\n"
        "proxy:\n"
        f"  port: {port}\n"
        "  aliases: {gpt-4o: 'gemma3:27b'}\n"
        "  connections:\n"
        f"    - {{name: ollama, mode: ollama, base_url: '{ollama_url}'}}\n" + extra
    )
    return path


def test_serve_answers_the_sdk_and_stops_on_sigterm(tmp_path, ollama):
    port = free_port()
    keys = tmp_path / "proxy-keys"
    keys.write_text("# proxy keys\nsk-from-file-123\n")
    keys.chmod(0o600)
    config = write_config(tmp_path / "stack.yaml", ollama.url, port, f"  api_keys_file: '{keys}'\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackctl", "--config", str(config), "proxy", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STACKCTL_PLATFORM": "linux"},
    )
    try:
        line = proc.stdout.readline()
        assert line == (
            f"stackctl proxy on http://127.0.0.1:{port} -> ollama (ollama) {ollama.url}; 1 API key\n"
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(
                    f"http://127.0.0.1:{port}/health",
                    headers={"Authorization": "Bearer sk-from-file-123"},
                )
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, (
                    proc.stderr.read() if proc.poll() is not None else "not serving"
                )
                time.sleep(0.05)
        assert health.json()["connections"][0]["reachable"] is True
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-from-file-123", max_retries=0
        ) as sdk:
            assert [m.id for m in sdk.models.list()] == ["gemma3:27b", "gpt-4o"]
            reply = sdk.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
            )
            assert (reply.model, reply.choices[0].message.content) == ("gpt-4o", "You said: Hi")
        assert "sk-from-file-123" not in line
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal it caught, so the service
    # manager sees the usual "killed by SIGTERM" of a clean stop
    assert proc.returncode == -signal.SIGTERM
    assert "Traceback" not in err
    assert "sk-from-file-123" not in out + err


def test_serve_refuses_the_network_without_keys(tmp_path, stackctl):
    config = write_config(tmp_path / "stack.yaml", "http://127.0.0.1:11434", 4000)
    result = stackctl(
        "--config", str(config), "proxy", "serve", "--host", "0.0.0.0", "--port", "4999"
    )
    assert result.code == 1
    assert result.err == (
        "Error: refusing to serve the proxy on 0.0.0.0:4999 without API keys: anyone who can "
        "reach this machine could use your models.\n"
        "Add a key: set proxy.api_keys_file in stack.yaml (e.g. `api_keys_file: "
        "~/.config/stackctl/proxy-keys`, a file of mode 0600 with one key a line; `stackctl up` "
        "writes one) or list keys in proxy.api_keys. Or listen on loopback only: "
        "`stackctl proxy serve --host 127.0.0.1`.\n"
    )


def test_serve_refuses_a_short_key_in_the_key_file(tmp_path, stackctl):
    """Keys from the file follow the rule inline keys follow: 8 characters, no spaces."""
    keys = tmp_path / "proxy-keys"
    keys.write_text("# proxy keys\nsk-long-enough\nabcde\n")
    keys.chmod(0o600)
    config = write_config(
        tmp_path / "stack.yaml", "http://127.0.0.1:11434", 4000, f"  api_keys_file: '{keys}'\n"
    )
    result = stackctl("--config", str(config), "proxy", "serve", "--port", "4999")
    assert result.code == 1
    assert result.err == (
        f"Error: {keys}:3: a proxy API key needs at least 8 characters and no spaces: "
        "replace this one (`stackctl up` writes a random key into an empty key file).\n"
    )


def test_serve_on_the_network_refuses_inline_keys_others_can_read(tmp_path, stackctl):
    config = write_config(
        tmp_path / "stack.yaml", "http://127.0.0.1:11434", 4000, "  api_keys: [sk-inline-123]\n"
    )
    config.chmod(0o644)  # what `config init` and most editors write
    result = stackctl(
        "--config", str(config), "proxy", "serve", "--host", "0.0.0.0", "--port", "4999"
    )
    assert result.code == 1
    assert result.err == (
        f"Error: {config} holds proxy.api_keys but others can read it, and the proxy would "
        f"listen on the network: run `chmod 600 {config}`, or move the keys to "
        "proxy.api_keys_file (a file of mode 0600).\n"
    )


def test_inline_keys_are_served_from_a_private_file_or_on_loopback(tmp_path):
    from stackctl.config import load
    from stackctl.secrets import proxy_api_keys

    path = write_config(
        tmp_path / "stack.yaml", "http://127.0.0.1:11434", 4000, "  api_keys: [sk-inline-123]\n"
    )
    path.chmod(0o644)
    config = load(path, "linux")
    assert proxy_api_keys(config.proxy, config.source) == [
        "sk-inline-123"
    ]  # loopback: nobody else can connect
    path.chmod(0o600)
    assert proxy_api_keys(config.proxy, config.source, exposed=True) == ["sk-inline-123"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("myhost", False)],
)  # fmt: skip
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_help_shows_serve_with_an_example(stackctl):
    result = stackctl("proxy", "serve", "--help")
    assert result.code == 0
    assert "stackctl --config ~/.config/stackctl/stack.yaml proxy serve --port 4000" in result.out


def test_sighup_reloads_the_keys_instead_of_ending_the_proxy(tmp_path, ollama, stackctl):
    """`kill -HUP`, as servers are reloaded: the proxy reads its key files at once and goes on
    (SIGHUP's default action would end it)."""
    port = free_port()
    keys = tmp_path / "proxy-keys"
    config = write_config(tmp_path / "stack.yaml", ollama.url, port, f"  api_keys_file: '{keys}'\n")
    first = stackctl("--config", str(config), "keys", "add", "first").out.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackctl", "--config", str(config), "proxy", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STACKCTL_PLATFORM": "linux"},
    )
    try:
        assert proc.stdout.readline().endswith("; 1 API key\n")
        headers = {"Authorization": f"Bearer {first}"}
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers).is_success
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers).is_success
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert "the proxy's keys were reloaded: 1 key(s)" in err
    assert first not in out + err
