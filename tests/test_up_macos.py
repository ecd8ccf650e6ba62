"""`stackctl up` on a Mac (STACKCTL_PLATFORM=macos), with fake brew, launchctl, sw_vers, sysctl
and python: the exact commands, the plists it loads, and the conflict and missing-tool paths.

Fake launchctl does not run programs, so the applied plans find the services already
answering: an in-process fake Ollama, an OpenAI-compatible fake standing in for the proxy,
and the fake Open WebUI, on the ports the config names (what launchd would have started).
"""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackctl.secrets import read_env_file
from tests.fakes.installer import FakeBin
from tests.fakes.ollama_api import FakeOllama
from tests.fakes.openai_backend import FakeOpenAIBackend
from tests.ports import free_ports, wait_for_port

UID = os.getuid()


@pytest.fixture
def mac(fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeBin:
    """A 16 GB Apple M2 with Homebrew (no Ollama yet) and nothing but the fakes on PATH."""
    monkeypatch.setenv("STACKCTL_PLATFORM", "macos")
    fake_bin.remove("ollama")  # not installed: brew installs it
    fake_bin.remove("nvidia-smi")
    fake_bin.scenario(brew_prefix=str(tmp_path / "homebrew"))
    monkeypatch.setenv("PATH", str(fake_bin.bin))  # no real python3.x from this machine
    # The probe spots a running Ollama.app by its command line; another program's test on this
    # machine may run one, so this Mac has none unless a test says otherwise.
    monkeypatch.setattr("stackctl.probe_processes._ollama_app_pid", lambda: None)
    return fake_bin


def support(home: Path) -> Path:
    return home / "Library/Application Support/stackctl"


def launchctl_changes(fake_bin: FakeBin) -> list[list[str]]:
    return [c for c in fake_bin.calls("launchctl") if c[1] != "print"]


def brew_changes(fake_bin: FakeBin) -> list[list[str]]:
    return [
        c
        for c in fake_bin.calls("brew")
        if c[1] in ("install", "upgrade", "services") and c[2] != "list"
    ]


def test_dry_run_lists_every_step_command_and_file(
    mac: FakeBin, isolated_home: Path, stackctl
) -> None:
    mac.scenario(brew_services={"ollama": "started"})
    result = stackctl("up", "--dry-run")
    assert result.code == 0, result.err
    base = support(isolated_home)
    venv = base / "venvs/openwebui"
    agents = isolated_home / "Library/LaunchAgents"
    python, uv = mac.bin / "python3.11", mac.bin / "uv"
    assert result.out.splitlines() == [
        "stackctl up: macOS 14.5 on Apple M2 (arm64), 16 GB unified memory (Metal)",
        f"  backend ollama, user scope, models gemma3:12b; config {base}/stack.yaml",
        "Plan: 11 steps, 11 to do",
        f"   1. [todo] Write the config file {base}/stack.yaml",
        f"         writes {base}/stack.yaml (0644)",
        "   2. [todo] Install Ollama with Homebrew (Metal acceleration on Apple Silicon)",
        "         $ brew install ollama",
        "   3. [todo] Stop homebrew.mxcl.ollama: Homebrew's ollama service (brew services) is "
        "running; it serves on port 11434 and restarts at login",
        "         $ brew services stop ollama",
        "   4. [todo] Create stackctl's data and log directories",
        f"         $ mkdir -p -m 755 {base}",
        f"         $ mkdir -p -m 755 {isolated_home}/Library/Logs/stackctl",
        f"         $ mkdir -p -m 700 {base}/openwebui",
        "   5. [todo] Generate the stack's secrets (once) into files only you can read",
        f"         writes {base}/secrets.env (0600)",
        "   6. [todo] Start Ollama first, so the models download while the rest installs",
        f"         $ launchctl enable gui/{UID}/dev.stackctl.ollama",
        f"         $ launchctl bootstrap gui/{UID} {agents}/dev.stackctl.ollama.plist",
        "         $ GET http://127.0.0.1:11434/api/tags",
        f"         writes {agents}/dev.stackctl.ollama.plist (0644)",
        "   7. [todo] Pull gemma3:12b into Ollama",
        "         $ POST http://127.0.0.1:11434/api/pull {model: gemma3:12b}",
        f"   8. [todo] Create Open WebUI's venv {venv}",
        f"         $ {uv} venv --seed --clear --python {python} '{venv}'",
        "   9. [todo] Install Open WebUI into its venv (uv; about a minute)",
        f"         $ {uv} pip install --python '{venv}/bin/python' open-webui",
        "  10. [todo] Write the service units and start ollama, proxy, openwebui",
        f"         $ launchctl enable gui/{UID}/dev.stackctl.ollama",
        f"         $ launchctl bootstrap gui/{UID} {agents}/dev.stackctl.ollama.plist",
        f"         $ launchctl enable gui/{UID}/dev.stackctl.proxy",
        f"         $ launchctl bootstrap gui/{UID} {agents}/dev.stackctl.proxy.plist",
        f"         $ launchctl enable gui/{UID}/dev.stackctl.openwebui",
        f"         $ launchctl bootstrap gui/{UID} {agents}/dev.stackctl.openwebui.plist",
        f"         writes {agents}/dev.stackctl.ollama.plist (0644)",
        f"         writes {agents}/dev.stackctl.proxy.plist (0644)",
        f"         writes {agents}/dev.stackctl.openwebui.plist (0600)",
        "  11. [todo] Wait until every service answers its health check",
        "         $ GET http://127.0.0.1:11434/api/tags",
        "         $ GET http://127.0.0.1:4000/v1/models",
        "         $ GET http://127.0.0.1:3000/health",
        "Dry run: nothing was changed.",
    ]
    assert not base.exists() and not agents.exists()
    assert brew_changes(mac) == [] and launchctl_changes(mac) == []


def test_no_homebrew_prints_the_official_install_and_stops(
    mac: FakeBin, isolated_home: Path, stackctl
) -> None:
    mac.remove("brew")
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: Homebrew is needed to install Ollama and was not found. Install it with the "
        "official command (see https://brew.sh):\n"
        '  /bin/bash -c "$(curl -fsSL https://raw.githubusercontent.com/Homebrew/install/HEAD/install.sh)"\n'
        "then run `stackctl up` again\n"
    )
    assert not support(isolated_home).exists()


def test_vllm_on_a_mac_is_refused(mac: FakeBin, stackctl) -> None:
    result = stackctl("up", "--backend", "vllm", "--dry-run")
    assert result.code == 1
    assert result.err == (
        "Error: vLLM needs Linux with an NVIDIA GPU; on a Mac use --backend ollama (Metal)\n"
    )


@pytest.fixture
def running_services(
    mac: FakeBin, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict]:
    """stack.yaml on free ports, and services answering there as launchd would run them."""
    # they stand for launchd's jobs: the probe must take them for stackctl's own
    monkeypatch.setattr("stackctl.probe_processes.owned_by_stackctl", lambda *args: True)
    from stackctl.paths import default_scope, paths_for

    ollama_port, proxy_port, webui_port = free_ports(3)
    config = paths_for("macos", default_scope()).config_file  # sudo_mac: /etc/stackctl
    config.parent.mkdir(parents=True)
    config.write_text(
        "models: [gemma3:1b]\n"
        f"ollama: {{port: {ollama_port}}}\nproxy: {{port: {proxy_port}}}\n"
        f"openwebui: {{port: {webui_port}}}\n"
    )
    ollama = FakeOllama(tmp_path / "ollama-state", port=ollama_port).start()
    proxy = FakeOpenAIBackend(["gemma3:1b"])
    proxy.server.port = proxy_port
    proxy.start()
    webui = subprocess.Popen(
        [str(mac.bin / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(webui_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(webui_port)
    yield {"ollama": ollama, "ports": (ollama_port, proxy_port, webui_port), "config": config}
    webui.terminate()
    webui.wait()
    proxy.stop()
    ollama.stop()


def read_plist(path: Path) -> dict:
    with open(path, "rb") as fh:
        return plistlib.load(fh)


def test_up_installs_ollama_loads_plists_and_pulls(
    mac: FakeBin, isolated_home: Path, running_services: dict, stackctl
) -> None:
    ollama_port, proxy_port, webui_port = running_services["ports"]
    prefix = Path(json.loads((mac.state / "scenario.json").read_text())["brew_prefix"])
    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    base = support(isolated_home)
    venv = base / "venvs/openwebui"
    agents = isolated_home / "Library/LaunchAgents"

    assert brew_changes(mac) == [["brew", "install", "ollama"]]
    assert mac.calls("uv") == [
        ["uv", "venv", "--seed", "--clear", "--python", str(mac.bin / "python3.11"), str(venv)],
        ["uv", "pip", "install", "--python", str(venv / "bin/python"), "open-webui"],
    ]
    assert mac.calls("pip") == []
    domain = f"gui/{UID}"
    assert launchctl_changes(mac) == [
        ["launchctl", "enable", f"{domain}/dev.stackctl.ollama"],
        ["launchctl", "bootstrap", domain, str(agents / "dev.stackctl.ollama.plist")],
        ["launchctl", "enable", f"{domain}/dev.stackctl.proxy"],
        ["launchctl", "bootstrap", domain, str(agents / "dev.stackctl.proxy.plist")],
        ["launchctl", "enable", f"{domain}/dev.stackctl.openwebui"],
        ["launchctl", "bootstrap", domain, str(agents / "dev.stackctl.openwebui.plist")],
    ]

    ollama = read_plist(agents / "dev.stackctl.ollama.plist")
    assert ollama["Label"] == "dev.stackctl.ollama"
    assert ollama["ProgramArguments"] == [str(prefix / "bin/ollama"), "serve"]
    assert ollama["EnvironmentVariables"]["OLLAMA_HOST"] == f"127.0.0.1:{ollama_port}"
    assert ollama["RunAtLoad"] is True and ollama["KeepAlive"] is True
    assert ollama["StandardOutPath"] == str(isolated_home / "Library/Logs/stackctl/ollama.log")
    proxy = read_plist(agents / "dev.stackctl.proxy.plist")
    assert proxy["ProgramArguments"][1:] == [
        "-m", "stackctl", "--config", str(running_services["config"]), "proxy", "serve",
        "--backend", "ollama", "--usage-file",
        str(isolated_home / "Library/Application Support/stackctl/proxy-key-usage.json"),
    ]  # fmt: skip
    webui_path = agents / "dev.stackctl.openwebui.plist"
    webui = read_plist(webui_path)
    assert webui["ProgramArguments"] == [
        str(venv / "bin/open-webui"), "serve", "--host", "127.0.0.1", "--port", str(webui_port)
    ]  # fmt: skip
    secrets = read_env_file(base / "secrets.env")
    env = webui["EnvironmentVariables"]
    assert env["WEBUI_SECRET_KEY"] == secrets["WEBUI_SECRET_KEY"]  # launchd has no env file
    assert env["OPENAI_API_BASE_URLS"] == f"http://127.0.0.1:{proxy_port}/v1"
    assert env["DATA_DIR"] == str(base / "openwebui")
    assert webui_path.stat().st_mode & 0o777 == 0o600
    assert (base / "secrets.env").stat().st_mode & 0o777 == 0o600

    assert [r["body"]["model"] for r in running_services["ollama"].requests("/api/pull")] == [
        "gemma3:1b"
    ]
    assert result.out.splitlines()[-6:-2] == [
        f"  Open WebUI:       http://127.0.0.1:{webui_port}",
        "    the first account you create becomes its admin",
        f"  OpenAI base URL:  http://127.0.0.1:{proxy_port}/v1",
        "  API key:          any (the proxy listens on 127.0.0.1 only and needs none)",
    ]

    mac.clear_calls()
    again = stackctl("up", "--yes")
    assert again.code == 0 and "Everything is in place: nothing to do." in again.out
    assert brew_changes(mac) == [] and launchctl_changes(mac) == [] and mac.calls("uv") == []

    down = stackctl("down")
    assert down.code == 0, down.err
    assert launchctl_changes(mac) == [
        ["launchctl", "bootout", f"{domain}/dev.stackctl.openwebui"],
        ["launchctl", "bootout", f"{domain}/dev.stackctl.proxy"],
        ["launchctl", "bootout", f"{domain}/dev.stackctl.ollama"],
    ]
    assert sorted(agents.iterdir()) == []
    assert (venv / "bin/open-webui").exists() and (base / "secrets.env").exists()


def test_without_python_uv_fetches_a_managed_one(
    mac: FakeBin, isolated_home: Path, running_services: dict, stackctl
) -> None:
    """No Python 3.11/3.12 on the Mac: no `brew install python@3.12` any more; uv fetches a
    CPython 3.12 into stackctl's data dir and makes the venv from it."""
    mac.remove("python3.11")
    mac.remove("python3.12")
    base = support(isolated_home)
    venv, managed = base / "venvs/openwebui", base / "python"
    plan = stackctl("up", "--dry-run")
    assert (
        f"   7. [todo] Create Open WebUI's venv {venv} (uv fetches Python 3.12: none here fits)\n"
        f"         $ UV_PYTHON_INSTALL_DIR='{managed}' {mac.bin / 'uv'} venv --seed --clear "
        f"--python 3.12 '{venv}'\n"
    ) in plan.out
    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    assert brew_changes(mac) == [["brew", "install", "ollama"]]
    calls = [json.loads(line) for line in (mac.state / "calls.jsonl").read_text().splitlines()]
    assert [(c["argv"][:2], c["env_python_dir"]) for c in calls if c["name"] == "uv"] == [
        (["venv", "--seed"], str(managed)),
        (["pip", "install"], None),
    ]
    assert "| Downloading cpython-3.12.4-linux-x86_64-gnu (download) (32.3MiB)\n" in result.out
    assert (managed / "cpython-3.12.4-linux-x86_64-gnu/bin/python3.12").exists()
    assert (
        f"home = {managed}/cpython-3.12.4-linux-x86_64-gnu/bin" in (venv / "pyvenv.cfg").read_text()
    )
    assert (venv / "bin/open-webui").exists() and (venv / "bin/pip").exists()


def test_pip_installer_without_python_says_how_to_get_one(mac: FakeBin, stackctl) -> None:
    mac.remove("python3.11")
    mac.remove("python3.12")
    result = stackctl("up", "--yes", "--installer", "pip")
    assert result.code == 1
    assert result.err == (
        "Error: Open WebUI needs Python 3.11 or 3.12 and none was found: install one "
        "(`brew install python@3.12`) or drop --installer pip (uv fetches one), then run "
        "`stackctl up` again; or skip the web UI with --no-webui\n"
    )
    assert brew_changes(mac) == []


def test_a_brew_failure_names_the_step_command_and_output(
    mac: FakeBin, isolated_home: Path, stackctl
) -> None:
    mac.scenario(brew_fail={"install ollama": "Error: Cannot download: network is unreachable"})
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: step 2/10 failed: Install Ollama with Homebrew (Metal acceleration on Apple Silicon)\n"
        "  command: brew install ollama (exit code 1)\n"
        "    Error: Cannot download: network is unreachable\n"
        "  fix: run `stackctl up` again to finish (steps already done are kept)\n"
    )
    assert (support(isolated_home) / "stack.yaml").exists()  # step 1 stays done


def test_conflicting_ollamas_are_stopped_by_their_steps(
    mac: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackctl.config import Config
    from stackctl.plan import Progress
    from stackctl.setup import UpOptions, resolve_context
    from stackctl.setup.macos import conflict_steps

    monkeypatch.setattr("stackctl.probe_processes._ollama_app_pid", lambda: 512)
    mac.scenario(brew_services={"ollama": "started"})
    ctx = resolve_context(Config(), Path("/nonexistent/stack.yaml"), UpOptions(yes=True))
    steps = conflict_steps(ctx)
    assert [(s.description.split(":")[0], s.commands) for s in steps] == [
        ("Stop Ollama.app", ["osascript -e 'quit app \"Ollama\"'"]),
        ("Stop homebrew.mxcl.ollama", ["brew services stop ollama"]),
    ]
    steps[1].apply(Progress(terminal=False))
    assert mac.calls("brew")[-1] == ["brew", "services", "stop", "ollama"]
    scenario = json.loads((mac.state / "scenario.json").read_text())
    assert scenario["brew_services"] == {"ollama": "none"}
    ctx.config.ollama.port = 11500  # our Ollama elsewhere: theirs on 11434 is no conflict
    assert conflict_steps(ctx) == []


def test_upgrade_upgrades_ollama_and_open_webui(
    mac: FakeBin, isolated_home: Path, running_services: dict, stackctl
) -> None:
    assert stackctl("up", "--yes").code == 0
    mac.clear_calls()
    result = stackctl("up", "--yes", "--upgrade")
    assert result.code == 0, result.out + result.err
    assert brew_changes(mac) == [["brew", "upgrade", "ollama"]]
    venv = support(isolated_home) / "venvs/openwebui"
    assert mac.calls("uv") == [
        ["uv", "pip", "install", "--python", str(venv / "bin/python"), "--upgrade", "open-webui"]
    ]
    assert "Plan: 12 steps, 3 to do" in result.out
    assert "[3/12] Upgrade Ollama with Homebrew\n" in result.out
    domain = f"gui/{UID}"
    assert launchctl_changes(mac) == [
        ["launchctl", "kickstart", "-k", f"{domain}/dev.stackctl.ollama"],
        ["launchctl", "kickstart", "-k", f"{domain}/dev.stackctl.openwebui"],
    ]


@pytest.fixture
def sudo_mac(mac: FakeBin, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    """`sudo stackctl up` on that Mac: root, run by `nobody` (an account this Linux box has,
    standing for the Mac's user; its home is the test's home)."""
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    monkeypatch.setenv("SUDO_USER", "nobody")
    return mac


def test_system_scope_runs_brew_as_the_user_who_ran_sudo(
    sudo_mac: FakeBin, isolated_home: Path, running_services: dict, stackctl
) -> None:
    # Homebrew refuses root (brew.sh check-run-command-as-root), and `brew services list` as
    # root lists /Library/LaunchDaemons: the user's own brew service must be asked as them.
    sudo_mac.scenario(brew_services={"ollama": "started"})
    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    as_user = ["sudo", "-u", "nobody", "-H", str(sudo_mac.bin / "brew")]
    changes = [c for c in sudo_mac.calls() if c[0] in ("brew", "sudo") and "list" not in c]
    assert [c for c in changes if c[1:2] != ["--prefix"]] == [
        [*as_user, "install", "ollama"],
        ["brew", "install", "ollama"],
    ]
    entries = [
        json.loads(line) for line in (sudo_mac.state / "calls.jsonl").read_text().splitlines()
    ]
    assert {tuple(e["argv"]) for e in entries if e["name"] == "brew" and e["root"]} == {
        ("--prefix",)
    }
    # the daemons run as nobody: it was given the log and data directories first
    assert [c[:3] for c in sudo_mac.calls("chown")] == [["chown", "-R", "nobody:staff"]]


def test_under_sudo_the_users_brew_service_is_seen_and_stopped_as_them(
    sudo_mac: FakeBin,
) -> None:
    from stackctl.config import Config
    from stackctl.plan import Progress
    from stackctl.setup import UpOptions, resolve_context
    from stackctl.setup.macos import conflict_steps

    sudo_mac.scenario(brew_services={"ollama": "started"})
    ctx = resolve_context(Config(), Path("/nonexistent/stack.yaml"), UpOptions(yes=True))
    steps = conflict_steps(ctx)
    brew = sudo_mac.bin / "brew"  # absolute: sudo's secure_path lacks Homebrew's bin
    assert [s.commands for s in steps] == [[f"sudo -u nobody -H {brew} services stop ollama"]]
    steps[0].apply(Progress(terminal=False))
    scenario = json.loads((sudo_mac.state / "scenario.json").read_text())
    assert scenario["brew_services"] == {"ollama": "none"}


def test_the_fake_brew_refuses_root_as_homebrew_does(mac: FakeBin, monkeypatch) -> None:
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    refused = subprocess.run(["brew", "install", "ollama"], capture_output=True, text=True)
    assert (refused.returncode, refused.stderr.splitlines()[0]) == (
        1, "Error: Running Homebrew as root is extremely dangerous and no longer supported."
    )  # fmt: skip
    allowed = subprocess.run(["brew", "--prefix"], capture_output=True, text=True)
    assert allowed.returncode == 0


def test_system_scope_gives_the_users_paths_to_the_account_the_daemons_run_as(
    sudo_mac: FakeBin, isolated_home: Path, stackctl
) -> None:
    # The LaunchDaemons run as the account that ran sudo, but root creates their directories:
    # launchd opens StandardOutPath as the job's user before starting it, Open WebUI opens
    # its database in its 0700 DATA_DIR, Ollama writes models, the proxy reads its key file.
    config = isolated_home / "etc/stackctl/stack.yaml"
    keys = isolated_home / "etc/stackctl/proxy-keys"
    config.parent.mkdir(parents=True)
    config.write_text(f"expose: true\nproxy: {{api_keys_file: {keys}}}\n")
    result = stackctl("up", "--dry-run")
    assert result.code == 0, result.err
    data = isolated_home / "Library/Application Support/stackctl"
    logs = isolated_home / "Library/Logs/stackctl"
    lines = result.out.splitlines()
    start = lines.index(next(line for line in lines if "Let 'nobody' own" in line))
    assert lines[start].split("] ", 1)[1] == "Let 'nobody' own the directories its services write"
    trees = [logs, data / "openwebui", data / "ollama/models"]
    assert lines[start + 1 : start + 3] == [
        "         $ " + shlex.join(["chown", "-R", "nobody:staff", *map(str, trees)]),
        "         $ " + shlex.join(["chown", "nobody:staff", str(keys), f"{keys}.json"]),
    ]
    # and before any unit is loaded (launchd starts RunAtLoad jobs at bootstrap): Ollama's,
    # loaded first so the models download while Open WebUI installs, then the others
    assert "Start Ollama first" in lines[start + 3]
    units = lines.index(next(line for line in lines if "Write the service units" in line))
    assert units > start + 3


# Ollama.app's bundled agent (ollama/ollama app/darwin/Ollama.app/Contents/Library/LaunchAgents/
# com.ollama.ollama.plist), registered with SMAppService by the app at start.
OLLAMA_APP_AGENT = {
    "Label": "com.ollama.ollama",
    "BundleProgram": "Contents/Frameworks/Squirrel.framework/Versions/A/Squirrel",
    "ProgramArguments": [
        "Contents/Frameworks/Squirrel.framework/Versions/A/Squirrel",
        "background",
    ],
    "RunAtLoad": True,
    "LimitLoadToSessionType": "Aqua",
    "POSIXSpawnType": "Interactive",
}


def test_ollama_apps_login_agent_is_switched_off_and_unloaded(mac: FakeBin, tmp_path: Path) -> None:
    from stackctl.config import Config
    from stackctl.plan import Progress
    from stackctl.setup import UpOptions, resolve_context
    from stackctl.setup.macos import conflict_steps

    agents = tmp_path / "Applications/Ollama.app/Contents/Library/LaunchAgents"
    agents.mkdir(parents=True)
    (agents / "com.ollama.ollama.plist").write_bytes(plistlib.dumps(OLLAMA_APP_AGENT))
    target = f"gui/{UID}/com.ollama.ollama"
    mac.scenario(
        launchd_jobs={
            target: {"plist": str(agents / "com.ollama.ollama.plist"), "state": "running",
                     "pid": 512, "runs": 1, "last_exit": None}
        }
    )  # fmt: skip
    ctx = resolve_context(Config(), Path("/nonexistent/stack.yaml"), UpOptions(yes=True))
    [step] = conflict_steps(ctx)
    assert step.description == (
        "Stop com.ollama.ollama: Ollama.app's login item com.ollama.ollama is loaded; it starts "
        "Ollama on port 11434 at every login, also after you quit the app. stackctl switches it "
        "off for good (`launchctl enable "
        f"{target}` undoes that); the app's own switch is in System Settings > General > "
        "Login Items & Extensions > Allow in the Background > Ollama"
    )
    assert step.commands == [f"launchctl disable {target} && launchctl bootout {target}"]
    step.apply(Progress(terminal=False))
    assert mac.calls("launchctl")[-2:] == [
        ["launchctl", "disable", target],
        ["launchctl", "bootout", target],
    ]
    scenario = json.loads((mac.state / "scenario.json").read_text())
    assert target in scenario["launchd_disabled"]  # at the next login it is not loaded again


@pytest.mark.parametrize("cask", [True, False])
def test_an_ollama_linked_from_ollama_app_is_not_what_the_service_runs(
    mac: FakeBin, isolated_home: Path, tmp_path: Path, stackctl, cask: bool
) -> None:
    # The ollama-app cask links <prefix>/bin/ollama into the app (its `binary` stanza), and
    # the app itself links /usr/local/bin/ollama, Homebrew's bin on an Intel Mac.
    prefix = tmp_path / "homebrew"
    app_ollama = tmp_path / "Applications/Ollama.app/Contents/Resources/ollama"
    app_ollama.parent.mkdir(parents=True)
    app_ollama.write_text("#!/bin/sh\n")
    app_ollama.chmod(0o755)
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin/ollama").symlink_to(app_ollama)
    if cask:
        mac.scenario(brew_casks={"ollama-app": "0.20.6"})
    result = stackctl("up", "--yes")
    assert result.code == 1
    found = (
        f"Error: {prefix}/bin/ollama is {app_ollama}, Ollama.app's own binary, not Homebrew's "
        "ollama formula: the app replaces it when it updates itself, and `brew upgrade` cannot. "
    )
    if cask:
        fix = (
            "Run `brew uninstall --cask ollama-app` (the ollama formula conflicts with that "
            "cask; models in ~/.ollama stay), then `stackctl up` again: it installs the formula\n"
        )
    else:
        fix = (
            f"Remove that link (`rm {prefix}/bin/ollama`; the app asks before linking it again), "
            "then run `stackctl up` again: it installs the formula\n"
        )
    assert result.err == found + fix
    assert brew_changes(mac) == [] and launchctl_changes(mac) == []
    report = json.loads(stackctl("doctor", "--json").out)["findings"]
    [finding] = [f for f in report if f["check"] == "ollama"]
    assert finding["severity"] == "error"
    assert f"{finding['message']}. {finding['fix']}\n" == found.removeprefix("Error: ") + fix


def test_a_mac_older_than_sonoma_is_refused_before_anything_changes(
    mac: FakeBin, isolated_home: Path, stackctl
) -> None:
    mac.scenario(macos_version="13.6.7", macos_build="22G720")
    result = stackctl("up", "--yes")
    assert (result.code, result.err) == (
        1,
        "Error: Ollama needs macOS 14 (Sonoma) or later and this Mac runs macOS 13.6.7 "
        "(Homebrew has no ollama bottle for it either): update macOS (System Settings > "
        "General > Software Update), then run `stackctl up` again\n",
    )
    assert brew_changes(mac) == [] and not support(isolated_home).exists()
    found = json.loads(stackctl("doctor", "--json").out)["findings"]
    assert [
        (f["severity"], f["message"], f["fix"])
        for f in found
        if f["check"] == "host" and f["severity"] != "ok"
    ] == [
        (
            "error",
            "Ollama needs macOS 14 (Sonoma) or later and this Mac runs macOS 13.6.7 (Homebrew "
            "has no ollama bottle for it either)",
            "update macOS (System Settings > General > Software Update)",
        )
    ]


INTEL = {"hw.optional.arm64": None, "machdep.cpu.brand_string": "Intel(R) Core(TM) i7-9750H"}


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_intel_mac_gets_the_last_open_webui_that_installs_there(
    mac: FakeBin, isolated_home: Path, running_services: dict, stackctl, installer: str
) -> None:
    mac.scenario(sysctl=INTEL)
    result = stackctl("up", "--yes", "--installer", installer)
    assert result.code == 0, result.out + result.err
    venv = support(isolated_home) / "venvs/openwebui"
    if installer == "uv":
        assert mac.calls("uv")[-1] == [
            "uv", "pip", "install", "--python", str(venv / "bin/python"), "open-webui==0.7.2"
        ]  # fmt: skip
        assert mac.calls("pip") == []
        takes = "uv; about a minute"
    else:
        assert mac.calls("uv") == []
        assert mac.calls("pip") == [["pip", "install", "open-webui==0.7.2"]]
        takes = "pip; takes a few minutes"
    assert (
        "Install Open WebUI 0.7.2 into its venv: the last release that installs on an Intel "
        f"Mac ({takes})" in result.out
    )
    found = json.loads(stackctl("doctor", "--json").out)["findings"]
    assert [f["text"] for f in found if f["check"] == "openwebui"] == [
        "Open WebUI 0.8 and later cannot be installed on an Intel Mac (no onnxruntime or "
        "torch builds for macOS x86_64, open-webui issue 28609): stackctl installs 0.7.2, the "
        "last release that can, and --upgrade keeps it there; or set openwebui.enabled: false",
    ]


def test_a_config_in_a_privacy_protected_folder_is_refused(
    mac: FakeBin, isolated_home: Path, stackctl
) -> None:
    # LaunchAgents are denied ~/Documents, ~/Desktop and ~/Downloads unless granted access:
    # the proxy reads its config there and would fail with "Operation not permitted".
    config = isolated_home / "Documents/stack.yaml"
    config.parent.mkdir()
    config.write_text("models: [gemma3:1b]\n")
    result = stackctl("--config", str(config), "up", "--dry-run")
    assert (result.code, result.err) == (
        1,
        f"Error: the config {config} is in ~/Documents, a folder macOS keeps from background "
        'services unless you grant them access (they fail with "Operation not permitted"): '
        "move it out of ~/Documents, ~/Desktop and ~/Downloads (e.g. to "
        f"{support(isolated_home)}/stack.yaml, the default), then run `stackctl up` again\n",
    )


def test_stackctl_run_from_a_privacy_protected_folder_is_refused(
    mac: FakeBin, isolated_home: Path, stackctl, monkeypatch
) -> None:
    python = isolated_home / "Desktop/stackctl/.venv/bin/python3"
    monkeypatch.setattr("sys.executable", str(python))
    result = stackctl("up", "--dry-run")
    assert (result.code, result.err) == (
        1,
        f"Error: the proxy service's Python {python} is in ~/Desktop, a folder macOS keeps "
        'from background services unless you grant them access (they fail with "Operation '
        'not permitted"): install stackctl outside ~/Documents, ~/Desktop and ~/Downloads '
        "(e.g. `pipx install` or `uv tool install`, which use ~/.local), then run `stackctl "
        "up` again\n",
    )


@pytest.mark.parametrize("filevault", [True, False])
def test_doctor_says_what_filevault_means_for_services_at_boot(
    sudo_mac: FakeBin, stackctl, filevault: bool
) -> None:
    sudo_mac.scenario(filevault=filevault)
    found = json.loads(stackctl("doctor", "--json").out)["findings"]
    assert [(f["severity"], f["text"]) for f in found if f["check"] == "filevault"] == [
        (
            "warn",
            "FileVault is on: after a restart the disk stays locked until someone logs in at "
            "the Mac's screen, so the services start only then: log in once after each "
            "restart, or restart with `sudo fdesetup authrestart`, which unlocks the disk for "
            "that one restart",
        )
        if filevault
        else ("ok", "FileVault is off: the services start at boot")
    ]


def test_ollama_restarted_by_its_own_step_is_waited_for_again(
    mac: FakeBin, isolated_home: Path, running_services: dict, stackctl
) -> None:
    # The "start Ollama first" step reloads Ollama's agent when its plist is missing or
    # changed; the units step then finds every unit in place, but the health step must still
    # wait for the Ollama this run (re)started.
    assert stackctl("up", "--yes").code == 0
    (isolated_home / "Library/LaunchAgents/dev.stackctl.ollama.plist").unlink()  # reloaded
    mac.clear_calls()
    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    plist = isolated_home / "Library/LaunchAgents/dev.stackctl.ollama.plist"
    assert ["launchctl", "bootstrap", f"gui/{UID}", str(plist)] in launchctl_changes(mac)
    assert (
        "[9/10] Write the service units and start ollama, proxy, openwebui: already in place\n"
        in result.out
    )
    assert (
        "[10/10] Wait until every service answers its health check\n"
        "      Ollama is healthy at " in result.out
    )


def test_an_exposed_stack_installs_caddy_with_homebrew_and_runs_the_front(
    mac: FakeBin, isolated_home: Path, stackctl
) -> None:
    from stackctl.config import load
    from stackctl.plan import Progress
    from stackctl.setup import UpOptions, resolve_context
    from stackctl.setup.front import caddy_steps

    config = support(isolated_home) / "stack.yaml"
    config.parent.mkdir(parents=True)
    keys = support(isolated_home) / "proxy-keys"
    config.write_text(f"expose: true\nproxy: {{api_keys_file: '{keys}'}}\n")
    plan = stackctl("up", "--dry-run")
    assert plan.code == 0, plan.err
    lines = plan.out.splitlines()
    at = lines.index("   4. [todo] Install Caddy (the HTTPS front) with Homebrew")
    assert lines[at + 1] == "         $ brew install caddy"
    agents = isolated_home / "Library/LaunchAgents"
    assert f"         writes {agents}/dev.stackctl.front.plist (0644)" in lines
    assert "         $ GET https://127.0.0.1:4443/health" in lines

    [install] = caddy_steps(resolve_context(load(config), config, UpOptions()))
    assert not install.check()
    install.apply(Progress(terminal=False))
    assert install.check()
    assert brew_changes(mac) == [["brew", "install", "caddy"]]
    prefix = Path(json.loads((mac.state / "scenario.json").read_text())["brew_prefix"])
    assert subprocess.run([prefix / "bin/caddy", "version"], capture_output=True, text=True,
                          check=True).stdout.startswith("v2.10.2")  # fmt: skip
