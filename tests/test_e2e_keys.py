"""End to end on Linux, under a REAL systemd user manager: an exposed stack's named keys.

up with expose: true -> Open WebUI's own named key, status healthy with it -> keys add, the
key works -> keys revoke, 401 within a second, the proxy never restarted -> a key limited to
5 requests a minute gets 429 with Retry-After on the sixth -> per-key metrics and last used
-> Open WebUI's key revoked: up gives it a new one and restarts it, and the stack is healthy.
The requests go to the proxy's own port on 127.0.0.1 (the HTTPS front is tested apart).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.fakes.installer import FakeBin
from tests.ports import free_ports
from tests.systemd_user import SystemdUser
from tests.test_proxy_keys import until

pytestmark = pytest.mark.systemd


def write_exposed_config(home: Path) -> tuple[Path, int]:
    ollama, proxy, webui = free_ports(3)
    path = home / ".config/stackctl/stack.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "models: [gemma3:1b]\n"
        "expose: true\n"
        f"ollama: {{port: {ollama}}}\n"
        f"proxy: {{port: {proxy}, api_keys_file: {path.parent / 'proxy-keys'}}}\n"
        f"openwebui: {{port: {webui}}}\n"
    )
    path.chmod(0o600)
    return path, proxy


def chat(port: int, key: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_an_exposed_stack_s_keys_are_added_used_limited_and_revoked_without_a_restart(
    systemd_user: SystemdUser, fake_bin: FakeBin, stackctl
) -> None:
    fake_bin.remove("nvidia-smi")
    fake_bin.scenario(linger="yes")
    _, port = write_exposed_config(systemd_user.home)

    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    assert "  API key:          one per person or app: `stackctl keys add NAME` (printed once)" in (
        result.out
    )
    status = json.loads(stackctl("status", "--json").out)
    assert status["healthy"] is True  # stackctl checks the proxy with Open WebUI's named key
    listed = json.loads(stackctl("keys", "list", "--json").out)
    assert [row["name"] for row in listed] == ["openwebui"]
    proxy_pid = systemd_user.main_pid("stackctl-proxy.service")

    assert chat(port, "sk-stackctl-not-a-key").status_code == 401
    added = stackctl("keys", "add", "alice")
    assert added.code == 0, added.err
    alice = added.out.strip()
    until(lambda: chat(port, alice).status_code == 200, 1.0)
    assert chat(port, alice).json()["choices"][0]["message"]["content"] == "You said: Hi"

    revoked = stackctl("keys", "revoke", "alice")
    assert revoked.out == "Revoked key 'alice': a running proxy refuses it within a second.\n"
    took = until(lambda: chat(port, alice).status_code == 401, 1.0)
    assert took < 1.0
    assert systemd_user.main_pid("stackctl-proxy.service") == proxy_pid  # no restart

    limited = stackctl("keys", "add", "ci", "--rpm", "5").out.strip()
    reader = stackctl("keys", "add", "reader").out.strip()
    until(lambda: chat(port, limited).status_code == 200, 1.0)  # the first of five
    answers = [chat(port, limited) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    sixth = answers[-1]
    assert 1 <= int(sixth.headers["retry-after"]) <= 60
    assert (sixth.json()["error"]["type"], sixth.json()["error"]["code"]) == (
        "requests",
        "rate_limit_exceeded",
    )

    metrics = httpx.get(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {reader}"}
    ).text
    assert 'stackctl_proxy_key_requests_total{key="ci"} 5' in metrics
    assert 'stackctl_proxy_key_rate_limited_total{key="ci",limit="requests"} 1' in metrics
    counted = re.search(r'^stackctl_proxy_key_requests_total\{key="alice"\} (\d+)$', metrics, re.M)
    assert counted and int(counted.group(1)) >= 2  # revoked keys stay counted
    assert all(key not in metrics for key in (alice, limited, reader))

    def ci_last_used() -> bool:  # the proxy writes it every few seconds, not per request
        rows = json.loads(stackctl("keys", "list", "--json").out)
        return any(row["name"] == "ci" and row["last_used"] for row in rows)

    until(ci_last_used, 10.0)
    assert systemd_user.main_pid("stackctl-proxy.service") == proxy_pid

    webui_pid = systemd_user.main_pid("stackctl-openwebui.service")
    stackctl("keys", "revoke", "openwebui")
    again = stackctl("up", "--yes")
    assert again.code == 0, again.out + again.err
    assert "restarted openwebui: it reads its new secret at start" in again.out, again.out
    restarted = systemd_user.main_pid("stackctl-openwebui.service")
    assert restarted != webui_pid
    environ = Path(f"/proc/{restarted}/environ").read_bytes().split(b"\0")
    new_key = next(v for v in environ if v.startswith(b"OPENAI_API_KEYS=")).split(b"=", 1)[1]
    assert chat(port, new_key.decode()).status_code == 200
    assert json.loads(stackctl("status", "--json").out)["healthy"] is True
    assert systemd_user.main_pid("stackctl-proxy.service") == proxy_pid  # keys reload live
