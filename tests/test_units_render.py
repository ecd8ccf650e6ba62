"""Rendering units: their content, systemd-analyze verify, launchd.plist(5) keys and types,
inputs from the host, and `stackctl units render`."""

from __future__ import annotations

import dataclasses
import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from stackctl.config import Config, load
from stackctl.errors import StackctlError
from stackctl.paths import paths_for
from stackctl.registry import NAMES, info
from stackctl.secrets import write_env_file
from stackctl.services.inputs import inputs_for_golden, inputs_for_host
from stackctl.services.render import render_units
from stackctl.services.units_systemd import environment, exec_arg
from stackctl.stack import resolve_stack

# every_service renders these: `ray` and `ray-serve` need a cluster (tests/test_cluster_units.py)
ONE_MACHINE = [name for name in NAMES if info(name).section != "cluster"]
# launchd.plist(5): every top-level key and the type it takes
LAUNCHD_KEYS: dict[str, type | tuple[type, ...]] = {
    "Label": str, "Disabled": bool, "UserName": str, "GroupName": str,
    "inetdCompatibility": dict, "LimitLoadToHosts": list, "LimitLoadFromHosts": list,
    "LimitLoadToSessionType": (str, list), "LimitLoadToHardware": dict,
    "LimitLoadFromHardware": dict, "Program": str, "ProgramArguments": list,
    "EnableGlobbing": bool, "EnableTransactions": bool, "EnablePressuredExit": bool,
    "OnDemand": bool, "ServiceIPC": bool, "KeepAlive": (bool, dict), "RunAtLoad": bool,
    "RootDirectory": str, "WorkingDirectory": str, "EnvironmentVariables": dict,
    "Umask": int, "TimeOut": int, "ExitTimeOut": int, "ThrottleInterval": int,
    "InitGroups": bool, "WatchPaths": list, "QueueDirectories": list, "StartOnMount": bool,
    "StartInterval": int, "StartCalendarInterval": (dict, list), "StandardInPath": str,
    "StandardOutPath": str, "StandardErrorPath": str, "Debug": bool, "WaitForDebugger": bool,
    "SoftResourceLimits": dict, "HardResourceLimits": dict, "Nice": int, "ProcessType": str,
    "AbandonProcessGroup": bool, "LowPriorityIO": bool, "LowPriorityBackgroundIO": bool,
    "MaterializeDatalessFiles": bool, "LaunchOnlyOnce": bool, "MachServices": dict,
    "Sockets": dict, "AssociatedBundleIdentifiers": (str, list),
}  # fmt: skip
PROCESS_TYPES = ("Background", "Standard", "Adaptive", "Interactive")


def config_from(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    return load(path)


def linux_units(config: Config, scope: str = "user", backend: str = "ollama") -> dict[str, str]:
    inputs = dataclasses.replace(inputs_for_golden("linux", scope), backend=backend)
    return {u.service: u.content for u in render_units(config, inputs)}


def lines_with(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_user_scope_systemd_units(tmp_path):
    config = config_from(
        tmp_path,
        "backend: ollama\nollama:\n  port: 11500\n  env:\n    OLLAMA_HOST: 0.0.0.0\n"
        "    OLLAMA_NUM_PARALLEL: 2\n    OLLAMA_KV_CACHE_TYPE: f16\n"
        "proxy:\n  port: 4100\nopenwebui:\n  port: 3100\n"
        "  admin_email: admin@example.com\n  env:\n    WEBUI_NAME: Team chat\n",
    )
    units = linux_units(config)
    assert list(units) == ["ollama", "proxy", "openwebui", "target"]
    ollama, proxy, webui = units["ollama"], units["proxy"], units["openwebui"]
    assert lines_with(ollama, "ExecStart=") == ["ExecStart=/usr/local/bin/ollama serve"]
    # ollama.env cannot move Ollama off loopback: the proxy is the only door. Homebrew's
    # tuning (flash attention, a q8_0 KV cache) and the context the model fit assumed are
    # defaults that ollama.env overrides.
    assert lines_with(ollama, "Environment=") == [
        "Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "Environment=OLLAMA_FLASH_ATTENTION=1",
        "Environment=OLLAMA_KV_CACHE_TYPE=f16",
        "Environment=OLLAMA_CONTEXT_LENGTH=4096",
        "Environment=OLLAMA_HOST=127.0.0.1:11500",
        "Environment=OLLAMA_NUM_PARALLEL=2",
    ]
    assert "EnvironmentFile" not in ollama and "User=" not in ollama
    assert lines_with(proxy, "ExecStart=") == [
        "ExecStart=/usr/bin/python3 -m stackctl --config "
        "/home/alice/.config/stackctl/stack.yaml proxy serve --backend ollama "
        "--usage-file /home/alice/.local/share/stackctl/proxy-key-usage.json"
    ]
    assert lines_with(proxy, "After=") == ["After=stackctl-ollama.service"]
    assert lines_with(proxy, "Wants=") == ["Wants=stackctl-ollama.service"]
    assert lines_with(webui, "ExecStart=") == [
        "ExecStart=/home/alice/.local/share/stackctl/venvs/openwebui/bin/open-webui serve "
        "--host 127.0.0.1 --port 3100"
    ]
    assert lines_with(webui, "After=") == ["After=stackctl-ollama.service stackctl-proxy.service"]
    assert "WorkingDirectory=/home/alice/.local/share/stackctl/openwebui" in webui
    for line in (
        "Environment=DATA_DIR=/home/alice/.local/share/stackctl/openwebui",
        "Environment=OPENAI_API_BASE_URLS=http://127.0.0.1:4100/v1",
        "Environment=ENABLE_OLLAMA_API=false",
        "Environment=ENABLE_PERSISTENT_CONFIG=false",
        "Environment=WEBUI_ADMIN_EMAIL=admin@example.com",
        'Environment="WEBUI_NAME=Team chat"',
        "EnvironmentFile=-/home/alice/.config/stackctl/secrets.env",
    ):
        assert line in webui.splitlines()
    for unit in (ollama, proxy, webui):
        assert "PartOf=stackctl.target" in unit and "WantedBy=stackctl.target" in unit
        assert "Restart=always" in unit and "RestartSec=" in unit
    assert "WantedBy=default.target" in units["target"]


def test_system_scope_units_run_hardened_as_the_service_account(tmp_path):
    config = config_from(tmp_path, "backend: vllm\nvllm:\n  env:\n    HF_HOME: /srv/models/hf\n")
    units = linux_units(config, scope="system", backend="vllm")
    assert list(units) == ["vllm", "proxy", "openwebui", "target"]
    vllm = units["vllm"]
    for line in (
        "User=stackctl",
        "Group=stackctl",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        # HF_HOME moved out of the data dir: it must stay writable
        "ReadWritePaths=/var/lib/stackctl /srv/models/hf",
        "PrivateTmp=yes",
        "Environment=HOME=/var/lib/stackctl",
        "Environment=HF_HOME=/srv/models/hf",
        "TimeoutStartSec=30min",
        "After=network-online.target",
    ):
        assert line in vllm.splitlines()
    assert lines_with(vllm, "PrivateDevices") == []  # the GPU's device nodes stay visible
    assert "PrivateDevices=yes" in units["proxy"].splitlines()
    assert "WantedBy=multi-user.target" in units["target"]


def test_proxy_disabled_points_open_webui_at_the_backend(tmp_path):
    config = config_from(tmp_path, "backend: ollama\nproxy:\n  enabled: false\n")
    units = linux_units(config)
    assert list(units) == ["ollama", "openwebui", "target"]
    webui = units["openwebui"]
    assert "Environment=OPENAI_API_BASE_URLS=http://127.0.0.1:11434/v1" in webui.splitlines()
    assert lines_with(webui, "After=") == ["After=stackctl-ollama.service"]

    config = config_from(tmp_path, "backend: vllm\nproxy:\n  enabled: false\n")
    webui = linux_units(config, backend="vllm")["openwebui"]
    assert "Environment=OPENAI_API_BASE_URLS=http://127.0.0.1:8000/v1" in webui.splitlines()


def test_expose_puts_only_the_front_on_the_network_and_turns_signup_off(tmp_path):
    config = config_from(
        tmp_path, "backend: vllm\nexpose: true\nproxy:\n  api_keys: [sk-0123456789]\n"
    )
    units = linux_units(config, backend="vllm")
    assert list(units) == ["vllm", "proxy", "openwebui", "front", "target"]
    webui = units["openwebui"].splitlines()
    assert "--host 127.0.0.1 --port 3000" in units["openwebui"]
    assert "Environment=ENABLE_SIGNUP=false" in webui
    assert "Environment=ENABLE_PERSISTENT_CONFIG=false" in webui  # the env wins at each start
    assert "EnvironmentFile=-/home/alice/.config/stackctl/secrets.env" in webui  # the admin
    assert lines_with(units["vllm"], "ExecStart=") == [
        "ExecStart=/home/alice/.local/share/stackctl/venvs/vllm/bin/vllm serve "
        "google/gemma-3-27b-it --host 127.0.0.1 --port 8000 --served-model-name gemma3:27b"
    ]
    front = units["front"].splitlines()
    assert lines_with(units["front"], "ExecStart=") == [
        "ExecStart=/usr/bin/python3 -m stackctl --config /home/alice/.config/stackctl/stack.yaml"
        " front run --data-dir /home/alice/.local/share/stackctl/caddy"
    ]
    assert "After=stackctl-proxy.service stackctl-openwebui.service" in front
    assert "WEBUI_URL" not in units["openwebui"]  # no public name to give it
    named = config_from(
        tmp_path,
        "expose: true\nproxy: {api_keys: [sk-0123456789]}\ntls: {domain: llm.example.com}\n",
    )
    webui = linux_units(named)["openwebui"].splitlines()
    assert "Environment=WEBUI_URL=https://llm.example.com:3443" in webui
    loopback = linux_units(config_from(tmp_path, "backend: vllm\n"), backend="vllm")
    assert "front" not in loopback
    assert "ENABLE_SIGNUP" not in loopback["openwebui"]


def test_vllm_args_are_quoted_and_reserved_flags_refused(tmp_path):
    config = config_from(
        tmp_path,
        'backend: vllm\nvllm:\n  args: [--max-model-len, "8192", --chat-template, '
        '"{% for m in messages %}$x{% endfor %}"]\n',
    )
    [exec_start] = lines_with(linux_units(config, backend="vllm")["vllm"], "ExecStart=")
    assert exec_start.endswith(
        ' --max-model-len 8192 --chat-template "{%% for m in messages %%}$$x{%% endfor %%}"'
    )
    config = config_from(tmp_path, "backend: vllm\nvllm:\n  args: [--host=0.0.0.0]\n")
    with pytest.raises(StackctlError) as failure:
        linux_units(config, backend="vllm")
    assert failure.value.format_message() == (
        "vllm.args: --host is set by stackctl (vLLM listens on 127.0.0.1 at vllm.port as "
        "vllm.served_model_name; an API key goes in secrets.env as VLLM_API_KEY): remove it "
        "from vllm.args"
    )


def test_systemd_quoting():
    assert exec_arg("x", "/usr/bin/ollama") == "/usr/bin/ollama"
    assert exec_arg("x", 'say "hi" \\ 100%') == '"say \\"hi\\" \\\\ 100%%"'
    assert exec_arg("x", "") == '""'
    assert environment("A", "b c") == '"A=b c"'
    assert environment("PRICE", "5$") == "PRICE=5$"  # no $-expansion in Environment=
    with pytest.raises(StackctlError) as failure:
        environment("BAD", "one\nExecStartPre=/bin/sh")
    assert failure.value.format_message() == (
        "BAD contains a line break, which cannot go into a unit file"
    )


def fake_executables(tmp_path: Path) -> dict[str, Path]:
    """Executables where the units expect them (systemd-analyze verify checks ExecStart=)."""
    made = {}
    for name, rel in (
        ("ollama", "bin/ollama"),
        ("openwebui_venv", "venvs/openwebui/bin/open-webui"),
        ("vllm_venv", "venvs/vllm/bin/vllm"),
    ):
        path = tmp_path / "exe" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
        made[name] = path
    return made


@pytest.mark.parametrize("scope", ["user", "system"])
def test_every_systemd_unit_passes_systemd_analyze_verify(tmp_path, scope):
    exe = fake_executables(tmp_path)
    inputs = dataclasses.replace(
        inputs_for_golden("linux", scope),
        ollama_bin=exe["ollama"],
        python=Path(sys.executable),
        openwebui_venv=exe["openwebui_venv"].parent.parent,
        vllm_venv=exe["vllm_venv"].parent.parent,
    )
    units = render_units(Config(), inputs, every_service=True)
    assert len(units) == len(ONE_MACHINE) + 1  # every service, and stackctl.target
    assert systemd_analyze_verify(tmp_path, units, scope) == (0, "")


def systemd_analyze_verify(tmp_path: Path, units: list, scope: str) -> tuple[int, str]:
    """`systemd-analyze [--user] verify` on the units, written into tmp_path/units."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for unit in units:
        (unit_dir / unit.filename).write_text(unit.content)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    argv = ["systemd-analyze", *(["--user"] if scope == "user" else []), "verify"]
    done = subprocess.run(
        [*argv, *(str(unit_dir / u.filename) for u in units)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},  # --user needs one
        check=False,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("scope", ["user", "system"])
def test_every_plist_uses_launchd_keys_with_their_types(scope):
    units = render_units(Config(), inputs_for_golden("macos", scope), every_service=True)
    assert [u.filename for u in units] == [f"dev.stackctl.{s}.plist" for s in ONE_MACHINE]
    for unit in units:
        plist = plistlib.loads(unit.content.encode())
        for key, value in plist.items():
            assert key in LAUNCHD_KEYS, f"{unit.filename}: {key} is not a launchd.plist(5) key"
            assert isinstance(value, LAUNCHD_KEYS[key]), f"{unit.filename}: {key}"
        assert plist["Label"] == unit.filename.removesuffix(".plist")
        assert all(isinstance(a, str) for a in plist["ProgramArguments"])
        assert plist["ProgramArguments"][0].startswith("/")
        assert all(isinstance(v, str) for v in plist["EnvironmentVariables"].values())
        assert "/opt/homebrew/bin" in plist["EnvironmentVariables"]["PATH"].split(":")
        assert plist["ProcessType"] in PROCESS_TYPES
        assert (plist["RunAtLoad"], plist["KeepAlive"]) == (True, True)
        assert plist["StandardOutPath"] == plist["StandardErrorPath"]
        assert ("UserName" in plist) == (scope == "system")
        assert unit.secret == (unit.service == "openwebui")


def test_inputs_for_host_finds_the_real_things(tmp_path, monkeypatch, isolated_home):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ollama").write_text("#!/bin/sh\n")
    (bin_dir / "ollama").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    inputs = inputs_for_host(resolve_stack(Config(backend="ollama"), "stack.yaml"))
    assert (inputs.platform, inputs.scope, inputs.backend) == ("linux", "user", "ollama")
    assert inputs.ollama_bin == bin_dir / "ollama"
    assert inputs.python == Path(sys.executable)
    assert inputs.config_path == Path.cwd() / "stack.yaml"
    assert inputs.home == isolated_home and inputs.secrets == {}
    system = inputs_for_host(
        resolve_stack(Config(backend="ollama", scope="system"), "/etc/stackctl/stack.yaml")
    )
    assert (system.user, system.group, system.home) == (
        "stackctl",
        "stackctl",
        system.paths.data_dir,
    )

    monkeypatch.setenv("PATH", "/nonexistent")
    config = Config(backend="ollama")
    with pytest.raises(StackctlError) as failure:
        render_units(config, inputs_for_host(resolve_stack(config, "stack.yaml")))
    assert failure.value.format_message() == (
        "cannot find the ollama executable (not on PATH, nor in Homebrew's bin): run "
        "`stackctl up` to install it"
    )


def test_units_render_prints_every_unit_without_secrets(
    stackctl, isolated_home, tmp_path, monkeypatch
):
    monkeypatch.setenv("STACKCTL_PLATFORM", "macos")
    write_env_file(paths_for("macos", "user").secrets_file, {"WEBUI_SECRET_KEY": "real-secret"})
    result = stackctl("units", "render")
    assert result.code == 0
    headers = [line for line in result.out.splitlines() if line.startswith("==> ")]
    agents = isolated_home / "Library/LaunchAgents"
    assert headers == [f"==> {agents}/dev.stackctl.{s}.plist <==" for s in ONE_MACHINE]
    assert "real-secret" not in result.out
    assert "<string>*** WEBUI_SECRET_KEY from secrets.env ***</string>" in result.out

    out = tmp_path / "out"
    result = stackctl(
        "units", "render", "--platform", "linux", "--scope", "system", "--out", str(out)
    )
    names = [f"stackctl-{s}.service" for s in ONE_MACHINE] + ["stackctl.target"]
    assert (result.code, result.out) == (0, "".join(f"{out / n}\n" for n in names))
    assert "User=stackctl" in (out / "stackctl-vllm.service").read_text()
    assert not agents.exists()  # rendering installs nothing


def test_units_render_help_has_an_example(stackctl):
    result = stackctl("units", "render", "--help")
    assert (
        "Example: stackctl units render --platform linux --scope system --out ./units" in result.out
    )


def test_every_placeholder_is_filled():
    """No `{name}` survives in any rendered unit, on either platform or scope."""
    for platform in ("linux", "macos"):
        for scope in ("user", "system"):
            for unit in render_units(
                Config(), inputs_for_golden(platform, scope), every_service=True
            ):
                assert "{" not in unit.content, unit.filename


def test_on_a_mac_the_ollama_unit_runs_homebrews_even_with_another_on_path(
    tmp_path, monkeypatch, isolated_home
):
    # Ollama.app links /usr/local/bin/ollama (ollama docs/macos.mdx), which may come first on
    # PATH: the service must run the formula's binary, which `brew upgrade` keeps current.
    monkeypatch.setenv("STACKCTL_PLATFORM", "macos")
    app_link = tmp_path / "usr-local-bin"
    app_link.mkdir()
    (app_link / "ollama").write_text("#!/bin/sh\n")
    (app_link / "ollama").chmod(0o755)
    prefix = tmp_path / "homebrew"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin/ollama").write_text("#!/bin/sh\n")
    (prefix / "bin/ollama").chmod(0o755)
    monkeypatch.setenv("PATH", f"{app_link}:{os.environ['PATH']}")
    inputs = inputs_for_host(resolve_stack(Config(), "stack.yaml"), brew_prefix=prefix)
    assert inputs.ollama_bin == prefix / "bin/ollama"
