"""End to end in system scope: `sudo stackctl up` under a REAL systemd system manager (PID 1 of
a private namespace, tests/systemd_system.py), for Ollama and for vLLM, with Open WebUI.

Fakes stand in only for the programs that cannot run here (ollama, vllm, hf, uv, nvidia-smi,
open-webui, pip); useradd, chown, getent and systemctl are real. Each fake writes where the real
program writes (its key, models, caches, DATA_DIR; vLLM opens /dev/nvidia*), so the hardening
of the units (User=stackctl, ProtectSystem=strict, ReadWritePaths, PrivateTmp, ...) is really
exercised: a directory the account may not write fails the service, and the test.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest

from tests.ports import free_ports
from tests.systemd_system import SYSTEM_PYTHON, SystemdSystem, add_checkout

pytestmark = pytest.mark.systemd

DATA = "/var/lib/stackctl"
MOVED = "/var/cache/models-disk/ollama"  # OLLAMA_MODELS outside the data dir (in /var's overlay)
HARDENING = {
    "User": "stackctl",
    "Group": "stackctl",
    "ProtectSystem": "strict",
    "ProtectHome": "read-only",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
}
RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564}


def write(system: SystemdSystem, path: str, text: str) -> None:
    system.run("sh", "-c", f'mkdir -p "$(dirname {path})" && cat > {path}', input=text, check=True)


def owners(system: SystemdSystem, *paths: str) -> dict[str, str]:
    """path -> "owner mode" inside the namespace (fails when a path is missing)."""
    out = system.run("stat", "-c", "%n %U %a", *paths, check=True).stdout
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


def status(system: SystemdSystem) -> tuple[int, dict]:
    done = system.stackctl("status", "--json")
    return done.returncode, json.loads(done.stdout)


def wait_healthy(system: SystemdSystem, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, data = status(system)
        if code == 0:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"the stack never became healthy: {json.dumps(data, indent=2)}")
        time.sleep(0.3)


def unit_files(system: SystemdSystem) -> list[str]:
    """stackctl's unit files and enablement links in /etc/systemd/system."""
    out = system.run("find", "/etc/systemd/system", "-name", "stackctl*", check=True).stdout
    return sorted(path.removeprefix("/etc/systemd/system/") for path in out.split())


def installed_units(*services: str) -> list[str]:
    """The units `up` writes and enables, as unit_files lists them."""
    units = [f"stackctl-{name}.service" for name in services]
    return [
        "multi-user.target.wants/stackctl.target",
        *units,
        "stackctl.target",
        "stackctl.target.wants",
        *(f"stackctl.target.wants/{unit}" for unit in units),
    ]


def assert_hardened(system: SystemdSystem, service: str, devices: bool) -> None:
    """The unit's sandbox as systemd applied it, and its process as the stackctl account in
    a read-only system."""
    unit = f"stackctl-{service}.service"
    shown = system.show(unit, *HARDENING, "ReadWritePaths", "PrivateDevices", "MainPID")
    assert {k: shown[k] for k in HARDENING} == HARDENING, unit
    assert shown["ReadWritePaths"].split()[0] == DATA
    assert shown["PrivateDevices"] == ("no" if devices else "yes")
    pid = shown["MainPID"]
    assert system.run("stat", "-c", "%U", f"/proc/{pid}", check=True).stdout == "stackctl\n"
    # in the service's own mount namespace: /usr is read-only, its data dir is not, /tmp is
    # its own
    inside = ["nsenter", "-t", pid, "-m", "findmnt", "-no", "OPTIONS", "-T"]
    assert system.run(*inside, "/usr", check=True).stdout.startswith("ro,")
    assert system.run(*inside, DATA, check=True).stdout.startswith("rw,")
    tmp = system.run("nsenter", "-t", pid, "-m", "findmnt", "-no", "SOURCE", "-T", "/tmp")
    assert "systemd-private-" in tmp.stdout, tmp.stdout


def chat(proxy_port: int, model: str) -> str:
    """One chat completion through the proxy service, from outside the namespace."""
    reply = httpx.post(
        f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Say hi"}]},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def lifecycle(
    system: SystemdSystem, services: list[str], backend: str, proxy_port: int, model: str
) -> None:
    """A chat, status, logs, restart, a crash, down, down --purge: as a person would."""
    data = wait_healthy(system)
    rows = {row["service"]: row for row in data["services"]}
    assert list(rows) == services
    assert all(row["state"] == "active" and row["health"] == "ok" for row in rows.values())
    assert chat(proxy_port, model)

    logs = system.stackctl("logs", "proxy")
    assert logs.returncode == 0, logs.stderr
    assert "stackctl proxy on http://127.0.0.1:" in logs.stdout
    assert f" -> {backend} (" in logs.stdout

    pids = {name: system.main_pid(f"stackctl-{name}.service") for name in services}
    done = system.stackctl("restart")
    assert done.returncode == 0, done.stdout + done.stderr
    # restart waits for health now (issue 8): what it restarted first, then each service's
    # wait (polls vary), then that all of them answer
    lines = done.stdout.splitlines()
    assert lines[0] == f"restarted: {', '.join(services)}"
    assert lines[-1] == f"healthy: {', '.join(services)}"
    assert all(line.lstrip().startswith("| waiting for ") for line in lines[1:-1])
    after = {name: system.main_pid(f"stackctl-{name}.service") for name in services}
    assert all(after[name] != pids[name] for name in services)
    wait_healthy(system)

    # the backend crashes: systemd brings it back, still as the service account
    unit = f"stackctl-{backend}.service"
    crashed = system.main_pid(unit)
    system.run("kill", "-9", str(crashed), check=True)
    system.wait_for(
        unit,
        lambda s: s["ActiveState"] == "active" and s["MainPID"] not in ("0", str(crashed)),
    )
    back = wait_healthy(system)
    assert {row["service"]: row for row in back["services"]}[backend]["restarts"] >= 1
    assert chat(proxy_port, model)
    assert_hardened(system, backend, devices=True)

    done = system.stackctl("down")
    assert done.returncode == 0, done.stdout + done.stderr
    assert unit_files(system) == []
    listed = system.systemctl("list-units", "--all", "--plain", "--no-legend", "stackctl*")
    assert listed.stdout.strip() == ""
    assert system.run("getent", "passwd", "stackctl").returncode == 0  # kept by plain down

    done = system.stackctl("down", "--purge", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert system.run("getent", "passwd", "stackctl").returncode == 2
    assert system.run("getent", "group", "stackctl").returncode == 2
    gone = system.run("ls", "-d", "/etc/stackctl", DATA, "/var/log/stackctl")
    assert gone.returncode != 0 and gone.stdout == "", gone.stdout


def up(system: SystemdSystem, stack_yaml: str, backend: str) -> str:
    """Write /etc/stackctl/stack.yaml, run `up --yes` as root, check every unit it installed
    and its sandbox; returns up's output."""
    write(system, "/etc/stackctl/stack.yaml", stack_yaml)
    done = system.stackctl("up", "--yes", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    services = [backend, "proxy", "openwebui"]
    assert unit_files(system) == installed_units(*sorted(services))
    for service in services:
        assert_hardened(system, service, devices=service == backend)
    return done.stdout


def config(ports: list[int], backend_lines: str) -> str:
    proxy, webui = ports
    return f"{backend_lines}proxy: {{port: {proxy}}}\nopenwebui: {{port: {webui}}}\n"


def test_ollama_stack_in_system_scope(systemd_system: Callable[..., SystemdSystem]) -> None:
    system = systemd_system()
    system.install_fakes(["ollama", "open-webui", "python3.11", "pip"])
    ollama, proxy, webui = free_ports(3)
    # the models on another disk, as doctor advises when the data dir's is full
    ollama_yaml = f"ollama: {{port: {ollama}, env: {{OLLAMA_MODELS: {MOVED}}}}}\n"
    out = up(system, config([proxy, webui], f"models: [gemma3:1b]\n{ollama_yaml}"), "ollama")
    assert "Create the system account 'stackctl' the services run as" in out
    assert out.splitlines()[-7] == "Your stack is up."

    # written by the services themselves, as the account, where the real programs write
    assert owners(
        system,
        f"{DATA}/.ollama/id_ed25519",
        f"{MOVED}/blobs",
        f"{MOVED}/models.json",
        f"{DATA}/openwebui/webui.db",
        f"{DATA}/openwebui/uploads",
        f"{DATA}/.cache/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2",
    ) == {
        f"{DATA}/.ollama/id_ed25519": "stackctl 600",
        f"{MOVED}/blobs": "stackctl 755",
        f"{MOVED}/models.json": "stackctl 644",
        f"{DATA}/openwebui/webui.db": "stackctl 644",
        f"{DATA}/openwebui/uploads": "stackctl 755",
        f"{DATA}/.cache/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2": (
            "stackctl 755"
        ),
    }
    assert owners(system, "/etc/stackctl/secrets.env") == {"/etc/stackctl/secrets.env": "root 600"}
    code, data = status(system)
    assert code == 0, data
    assert {row["service"]: row for row in data["services"]}["ollama"]["models"] == ["gemma3:1b"]

    lifecycle(system, ["ollama", "proxy", "openwebui"], "ollama", proxy, "gemma3:1b")


def test_vllm_stack_in_system_scope(systemd_system: Callable[..., SystemdSystem]) -> None:
    system = systemd_system(nvidia_devices=True)
    fakes = system.install_fakes(
        ["nvidia-smi", "uv", "vllm", "hf", "open-webui", "python3.11", "pip"]
    )
    fakes.scenario(gpus=[RTX_4090], nvidia_devices=True)
    vllm, proxy, webui = free_ports(3)
    repo = "Qwen/Qwen2.5-0.5B-Instruct"
    vllm_yaml = f'vllm: {{port: {vllm}, model: {repo}, served_model_name: "qwen2.5:0.5b"}}\n'
    out = up(system, config([proxy, webui], vllm_yaml), "vllm")
    assert f"Download {repo} into {DATA}/huggingface" in out
    cache = f"{DATA}/huggingface/hub/models--Qwen--Qwen2.5-0.5B-Instruct"
    assert owners(system, f"{cache}/refs/main", f"{DATA}/.cache/vllm/modelinfos") == {
        f"{cache}/refs/main": "stackctl 644",  # downloaded by up as root, then given over
        f"{DATA}/.cache/vllm/modelinfos": "stackctl 755",  # written by vLLM itself
    }
    code, data = status(system)
    assert code == 0, data
    assert {row["service"]: row for row in data["services"]}["vllm"]["models"] == ["qwen2.5:0.5b"]

    lifecycle(system, ["vllm", "proxy", "openwebui"], "vllm", proxy, "qwen2.5:0.5b")


def test_up_refuses_an_interpreter_the_account_cannot_reach(
    systemd_system: Callable[..., SystemdSystem],
) -> None:
    """Issue 8's defect, as found: stackctl in a venv in /opt whose python links into a
    directory closed to other accounts (pyenv under /root). `up` as root stops before
    changing anything, instead of a proxy unit failing with status=203/EXEC."""
    system = systemd_system()
    closed = system.workdir / "root-home"
    closed.mkdir(mode=0o700)
    (closed / "python3.11").symlink_to(SYSTEM_PYTHON.resolve())
    venv = system.workdir / "opt-stackctl"
    subprocess.run(
        [str(closed / "python3.11"), "-m", "venv", "--without-pip", str(venv)], check=True
    )
    add_checkout(venv, system.workdir)
    system.install_fakes(["ollama", "open-webui", "python3.11", "pip"])
    write(system, "/etc/stackctl/stack.yaml", config(free_ports(2), "models: [gemma3:1b]\n"))

    done = system.run(str(venv / "bin/python"), "-m", "stackctl", "up", "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"Error: the proxy service runs {venv / 'bin/python'} (a link to "
        f"{closed / 'python3.11'}) as the 'stackctl' account, which cannot enter {closed}: "
        "install stackctl with a Python every account can read, e.g. Debian's: `sudo "
        "/usr/bin/python3 -m venv /opt/stackctl && sudo /opt/stackctl/bin/pip install "
        "stackctl`, then run `sudo /opt/stackctl/bin/stackctl up`\n"
    )
    assert system.run("getent", "passwd", "stackctl").returncode == 2
    assert unit_files(system) == []
