"""The HTTPS front's config (`tls`), its Caddyfile (checked by the real `caddy adapt`), the
names its local CA certifies, and the certificate expiry `status` reads."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from stackctl.config import validate_text
from stackctl.front import caddyfile, machine_names, not_after
from stackctl.paths import paths_for

EXPOSED = "expose: true\nproxy: {api_keys: [sk-0123456789]}\n"


def problems(text: str) -> list[str]:
    config, found = validate_text(text, "stack.yaml", "linux")
    assert (config is None) == bool(found)
    return found


def config(text: str):
    loaded, found = validate_text(text, "stack.yaml", "linux")
    assert found == [] and loaded is not None
    return loaded


def test_tls_defaults_to_the_local_ca_on_ports_4443_and_3443() -> None:
    tls = config(EXPOSED).tls
    assert (tls.mode, tls.port, tls.openwebui_port) == ("internal", 4443, 3443)
    assert config(EXPOSED + "tls: {domain: llm.example.com}\n").tls.mode == "acme"


def test_tls_problems_name_the_line_and_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert problems(EXPOSED + f"tls:\n  cert: {cert}\n") == [
        "stack.yaml:4: tls.cert needs tls.key too (a certificate and its private key, both PEM "
        "files); or remove both to use Caddy's local CA"
    ]
    assert problems(EXPOSED + f"tls:\n  cert: {cert}\n  key: {tmp_path}/none.pem\n") == [
        f"stack.yaml:5: tls.key: {tmp_path}/none.pem is not a file"
    ]
    assert problems(EXPOSED + "tls:\n  domain: not a domain\n") == [
        "stack.yaml:4: tls.domain: expected a domain name such as llm.example.com, got the "
        "text 'not a domain'"
    ]
    assert problems(EXPOSED + "tls:\n  prot: 443\n") == [
        "stack.yaml:4: unknown key 'prot' in tls; did you mean 'port'?"
    ]
    assert problems(EXPOSED + "tls:\n  port: 4000\n") == [
        "stack.yaml:4: tls.port and proxy.port are both 4000: give each service its own port"
    ]
    assert problems(EXPOSED + "tls:\n  openwebui_port: 3000\n") == [
        "stack.yaml:4: tls.openwebui_port and openwebui.port are both 3000: give each its own port"
    ]
    assert problems("tls:\n  port: 4000\n") == []  # no front without expose: nothing shared


def test_machine_names_cover_host_mdns_addresses_and_loopback() -> None:
    assert machine_names("GPU-Box", ["192.168.1.20", "fd00::5"]) == [
        "gpu-box",
        "gpu-box.local",
        "192.168.1.20",
        "fd00::5",
        "localhost",
        "127.0.0.1",
        "::1",
    ]
    assert machine_names("box.lan", [])[:2] == ["box.lan", "localhost"]


def adapt(text: str, tmp_path: Path) -> dict:
    """The JSON config the real Caddy makes of a Caddyfile (it refuses what it cannot read)."""
    path = tmp_path / "Caddyfile"
    path.write_text(text)
    done = subprocess.run(
        ["caddy", "adapt", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


needs_caddy = pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed")


@needs_caddy
def test_the_local_ca_caddyfile_serves_https_only_with_no_admin_api(tmp_path: Path) -> None:
    paths = paths_for("linux", "user")
    text = caddyfile(config(EXPOSED), paths.caddy_data, machine_names("box", ["10.0.0.5"]))
    adapted = adapt(text, tmp_path)
    assert adapted["admin"] == {"disabled": True}
    assert adapted["storage"] == {"module": "file_system", "root": str(paths.caddy_data)}
    servers = adapted["apps"]["http"]["servers"]
    assert sorted(s["listen"][0] for s in servers.values()) == [":3443", ":4443"]
    for server in servers.values():
        assert server["read_header_timeout"] == 10 * 10**9
        assert server["automatic_https"] == {"disable_redirects": True}
        [route] = server["routes"]
        assert route["match"][0]["host"] == [
            "box", "box.local", "10.0.0.5", "localhost", "127.0.0.1", "::1"
        ]  # fmt: skip
    upstreams = sorted(json.dumps(servers[name]["routes"][0]["handle"]) for name in servers)
    assert '"dial": "127.0.0.1:3000"' in upstreams[0] + upstreams[1]
    assert '"dial": "127.0.0.1:4000"' in upstreams[0] + upstreams[1]
    tls = adapted["apps"]["tls"]
    assert tls["automation"]["policies"][0]["issuers"] == [{"module": "internal"}]
    assert adapted["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    assert "- listen :80" not in text and "http://" not in text


@needs_caddy
def test_a_domain_gets_acme_and_files_are_served_as_given(tmp_path: Path) -> None:
    paths = paths_for("linux", "user")
    acme = adapt(
        caddyfile(config(EXPOSED + "tls: {domain: llm.example.com}\n"), paths.caddy_data, []),
        tmp_path,
    )
    hosts = [s["routes"][0]["match"][0]["host"] for s in acme["apps"]["http"]["servers"].values()]
    assert hosts == [["llm.example.com"], ["llm.example.com"]]
    assert "automation" not in acme["apps"].get("tls", {})  # Caddy's default: ACME
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    files = caddyfile(
        config(EXPOSED + f"tls: {{cert: {cert}, key: {key}}}\n"), paths.caddy_data, []
    )
    assert f'\ttls "{cert}" "{key}"' in files and ":4443 {" in files


def test_not_after_reads_the_expiry_of_a_der_certificate() -> None:
    # a self-signed certificate: `openssl x509 -noout -enddate` says Dec  3 09:27:53 2026 GMT
    pem = (Path(__file__).parent / "fakes/cert.pem").read_text()
    import ssl

    der = ssl.PEM_cert_to_DER_cert(pem)
    assert not_after(der) == datetime(2026, 12, 3, 9, 27, 53, tzinfo=timezone.utc)


def test_front_caddyfile_prints_what_the_front_runs_with(stackctl, isolated_home: Path) -> None:
    config = isolated_home / "stack.yaml"
    config.write_text(EXPOSED + "tls: {domain: llm.example.com, port: 8443}\n")
    result = stackctl("--config", str(config), "front", "caddyfile")
    assert result.code == 0, result.err
    assert "\tadmin off\n" in result.out and "\tskip_install_trust\n" in result.out
    assert "https://llm.example.com:8443 {\n\treverse_proxy 127.0.0.1:4000 {" in result.out


def test_front_run_without_caddy_says_how_to_install_it(
    stackctl, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(isolated_home))  # no caddy there
    monkeypatch.setenv("STACKCTL_PLATFORM", "linux")
    result = stackctl("front", "run", "--data-dir", str(isolated_home / "caddy"))
    assert result.code == 1
    assert result.err.endswith(
        "install it (`sudo apt-get install caddy`), then `stackctl restart front`\n"
    )
