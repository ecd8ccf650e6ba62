"""End to end, exposed: `stackctl up` with `expose: true` and no `openwebui.admin_email`
under a REAL systemd user manager, the REAL Caddy as the HTTPS front (Debian's package),
fakes for Ollama and Open WebUI (the fake's accounts follow open-webui 0.12.4).

Seen from this machine's own network address (its default route's, not loopback): Open
WebUI refuses an unauthenticated signup, the admin stackctl generated signs in, the proxy
answers, all over HTTPS verified against Caddy's local root CA; nothing answers plain HTTP:
the proxy's and Open WebUI's own ports are loopback-only, the front's ports speak only TLS,
and Caddy listens on those two and nothing else (no :80, no admin API).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import time
from pathlib import Path

import httpx
import psutil
import pytest

from stackctl.front import machine_addresses
from stackctl.secrets import read_env_file
from tests.fakes.installer import FakeBin
from tests.ports import free_ports
from tests.systemd_user import SystemdUser

pytestmark = [
    pytest.mark.systemd,
    pytest.mark.skipif(shutil.which("caddy") is None, reason="needs caddy (.ci/run installs it)"),
]

ACCESS_PROHIBITED = (
    "You do not have permission to access this resource. Please contact your administrator "
    "for assistance."
)


def network_address() -> str:
    """This machine's IPv4 address on its default route: reachable from the network."""
    found = [a for a in machine_addresses(socket.gethostname()) if ":" not in a]
    assert found, "this machine has no non-loopback IPv4 address to test the front on"
    return found[0]


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def plain_http(address: str, port: int) -> bytes:
    """What a plain-HTTP GET gets from address:port (the whole answer, until closed)."""
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_front_healthy(stackctl, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = stackctl("status", "--json")
        data = json.loads(result.out)
        if result.code == 0:
            return data
        assert time.monotonic() < deadline, json.dumps(data, indent=2)
        time.sleep(0.3)


def test_exposed_stack_serves_https_only_with_a_headless_admin(
    systemd_user: SystemdUser, fake_bin: FakeBin, stackctl
) -> None:
    fake_bin.remove("nvidia-smi")  # Ollama
    fake_bin.scenario(linger="yes")
    home = systemd_user.home
    ollama, proxy, webui, front_proxy, front_webui = free_ports(5)
    config = home / ".config/stackctl/stack.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    keys_file = home / ".config/stackctl/proxy-keys"
    config.write_text(
        "models: [gemma3:1b]\n"
        "expose: true\n"
        f"ollama: {{port: {ollama}}}\n"
        f"proxy: {{port: {proxy}, api_keys_file: {keys_file}}}\n"
        f"openwebui: {{port: {webui}}}\n"
        f"tls: {{port: {front_proxy}, openwebui_port: {front_webui}}}\n"
    )

    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    units = sorted(p.name for p in systemd_user.unit_dir.glob("*.service"))
    assert units == [
        "stackctl-front.service",
        "stackctl-ollama.service",
        "stackctl-openwebui.service",
        "stackctl-proxy.service",
    ]
    secrets_file = home / ".config/stackctl/secrets.env"
    secrets = read_env_file(secrets_file)
    email, password = secrets["WEBUI_ADMIN_EMAIL"], secrets["WEBUI_ADMIN_PASSWORD"]
    host = socket.gethostname()
    assert email == f"admin@{host.split('.')[0].lower()}.local"
    root = home / ".local/share/stackctl/caddy/pki/authorities/local/root.crt"
    summary = result.out.splitlines()
    assert f"  Open WebUI:       https://{host}:{front_webui}" in summary
    assert f"  OpenAI base URL:  https://{host}:{front_proxy}/v1" in summary
    assert (
        f"    log in as {email}; the password is WEBUI_ADMIN_PASSWORD in {secrets_file} "
        f"(`grep WEBUI_ADMIN_PASSWORD {secrets_file}`)" in summary
    )
    assert f"  HTTPS:            Caddy's local CA; clients trust its root {root}:" in summary

    data = wait_front_healthy(stackctl)
    rows = {row["service"]: row for row in data["services"]}
    assert list(rows) == ["ollama", "proxy", "openwebui", "front"]
    assert rows["front"]["url"] == f"https://127.0.0.1:{front_proxy}"
    expires = rows["front"]["certificate_expires"]
    assert expires is not None and "cert expires in " in stackctl("status").out

    address = network_address()
    with httpx.Client(verify=ssl.create_default_context(cafile=root), timeout=10) as client:
        webui_url = f"https://{address}:{front_webui}"
        mallory = {"name": "Mallory", "email": "mallory@example.com", "password": "pw-123456"}
        signup = client.post(f"{webui_url}/api/v1/auths/signup", json=mallory)
        assert (signup.status_code, signup.json()) == (403, {"detail": ACCESS_PROHIBITED})
        login = {"email": email, "password": password}
        session = client.post(f"{webui_url}/api/v1/auths/signin", json=login)
        assert session.status_code == 200 and session.json()["role"] == "admin"

        key = stackctl("keys", "add", "through-the-front").out.strip()  # a named key
        deadline = time.monotonic() + 2  # the proxy takes it within a second
        while True:
            models = client.get(
                f"https://{address}:{front_proxy}/v1/models",
                headers={"Authorization": f"Bearer {key}"},
            )
            if models.status_code != 401 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert models.status_code == 200
        assert [m["id"] for m in models.json()["data"]] == ["gemma3:1b"]
        assert client.get(f"https://{address}:{front_proxy}/v1/models").status_code == 401

    # nothing in clear text on the network address: the services listen on loopback only,
    # and Caddy listens on the front's two ports and nothing else (no :80, no admin API)
    for port in (proxy, webui):
        assert refused(address, port), port
    caddy = psutil.Process(systemd_user.main_pid("stackctl-front.service"))
    assert caddy.name() == "caddy"
    listening = {c.laddr.port for c in caddy.net_connections("tcp") if c.status == "LISTEN"}
    assert listening == {front_proxy, front_webui}
    for port in (front_proxy, front_webui):
        answer = plain_http(address, port)
        assert answer.startswith(b"HTTP/1.0 400 Bad Request"), answer
        assert b"Client sent an HTTP request to an HTTPS server." in answer
    # the CA is stackctl's own: a client that does not trust it refuses the front
    with (
        httpx.Client() as untrusting,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        untrusting.get(f"https://{address}:{front_proxy}/health")
    assert Path(systemd_user.home / ".local/share/stackctl/caddy/Caddyfile").exists()
