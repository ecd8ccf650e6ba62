"""`stackctl up` plans on Linux: flags vs an existing stack.yaml, the stack.yaml it writes,
system scope (account, ownership, /etc and /var/lib paths), a missing Ollama, secrets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from stackctl import keystore
from stackctl.config import Config, load
from stackctl.plan import Progress
from stackctl.secrets import read_env_file
from stackctl.setup import UpOptions, resolve_context
from stackctl.setup.common import account_step, ownership_step, secrets_step
from stackctl.setup.configfile import config_text
from stackctl.setup.steps import build_steps
from stackctl.setup.summary import summary_lines
from tests.fakes import hosts
from tests.fakes.installer import FakeBin
from tests.ports import free_ports


def free_ports_yaml(openwebui: str = "") -> str:
    """Each service on a free port: 11434, 4000 or 3000 may be taken on a shared test box.
    `openwebui`: more of its section, e.g. ", env: {OFFLINE_MODE: 'true'}"."""
    services = ("ollama", "proxy", "openwebui")
    text = "".join(f"{s}: {{port: {p}}}\n" for s, p in zip(services, free_ports(3), strict=True))
    return text[:-2] + openwebui + "}\n"


@pytest.fixture
def cpu_box(fake_bin: FakeBin) -> FakeBin:
    """Linux, no NVIDIA GPU, an installed ollama, linger on."""
    fake_bin.remove("nvidia-smi")
    fake_bin.scenario(linger="yes")
    return fake_bin


def config_file(home: Path, text: str) -> Path:
    path = home / ".config/stackctl/stack.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_flag_that_contradicts_stack_yaml_is_refused(
    cpu_box: FakeBin, isolated_home: Path, stackctl
) -> None:
    path = config_file(isolated_home, "backend: ollama\n")
    result = stackctl("up", "--backend", "vllm", "--dry-run")
    assert result.code == 1
    assert result.err == (
        f"Error: {path} says backend: ollama, but --backend vllm was given: edit backend in "
        "that file (or drop the flag), then run `stackctl up` again\n"
    )
    result = stackctl("up", "--no-webui", "--dry-run")
    assert result.err == (
        f"Error: {path} says openwebui.enabled: true, but --no-webui was given: edit "
        "openwebui.enabled in that file (or drop the flag), then run `stackctl up` again\n"
    )


def test_no_gpu_with_backend_vllm_in_the_file_names_the_key_to_edit(
    cpu_box: FakeBin, isolated_home: Path, stackctl
) -> None:
    """Not --backend ollama, which a stack.yaml saying vllm refuses: the key to edit."""
    path = config_file(isolated_home, "backend: vllm\n")
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: backend vllm needs an NVIDIA GPU and driver: nvidia-smi found none. Install "
        f"the driver, or set backend: ollama in {path}\n"
    )
    path.write_text("backend: ollama\n" + free_ports_yaml())  # the advice, followed, works
    assert stackctl("up", "--dry-run").code == 0


def test_no_gpu_and_no_stack_yaml_advises_the_flag(cpu_box: FakeBin, stackctl) -> None:
    result = stackctl("up", "--backend", "vllm", "--yes")
    assert result.err.endswith("Install the driver, or use --backend ollama\n")
    result = stackctl("up", "--backend", "ollama", "--dry-run")  # the advice, followed
    assert "  backend ollama, user scope" in result.out and "backend" not in result.err


def test_system_scope_needs_root(cpu_box: FakeBin, stackctl) -> None:
    result = stackctl("up", "--scope", "system", "--dry-run")
    assert result.code == 1
    assert result.err == (
        "Error: system scope installs services for the whole machine and needs root: "
        "run `sudo stackctl up --scope system`\n"
    )


def test_the_new_stack_yaml_records_the_flags(cpu_box: FakeBin, isolated_home: Path) -> None:
    path = isolated_home / ".config/stackctl/stack.yaml"
    options = UpOptions(models=("llama3.2", "gemma3:1b"), no_webui=True)
    ctx = resolve_context(Config(), path, options)
    assert ctx.models == ["llama3.2", "gemma3:1b"]
    text = config_text(ctx)
    data = yaml.safe_load(text)
    assert data["backend"] == "ollama" and data["scope"] == "user"
    assert data["models"] == ["llama3.2", "gemma3:1b"]
    assert data["openwebui"]["enabled"] is False
    assert text.startswith("# stackctl config: the whole stack in one file.")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert load(path).openwebui.enabled is False


def test_more_models_for_an_existing_config_are_pulled_too(
    cpu_box: FakeBin, isolated_home: Path
) -> None:
    path = config_file(isolated_home, "models: [gemma3:1b]\n")
    ctx = resolve_context(load(path), path, UpOptions(models=("qwen3:0.6b",)))
    assert ctx.models == ["gemma3:1b", "qwen3:0.6b"]


def test_no_ollama_on_linux_prints_the_manual_install_and_stops(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    cpu_box.remove("ollama")
    monkeypatch.setenv("PATH", str(cpu_box.bin))  # no other ollama on this machine's PATH
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: Ollama is not installed. Install the binary with Ollama's manual install "
        "(docs: https://ollama.com/download/linux):\n"
        "  curl -fsSL https://ollama.com/download/ollama-linux-amd64.tar.zst | zstd -d | "
        "sudo tar x -C /usr\n"
        "then run `stackctl up` again. (Ollama's install.sh also starts its own "
        "ollama.service on port 11434; if you use it, stop that with "
        "`sudo systemctl disable --now ollama`.)\n"
    )
    assert not (isolated_home / ".config/stackctl").exists()


def test_no_service_manager_is_refused_before_anything_is_installed(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stackctl
) -> None:
    """Root in a container without systemd as PID 1: nothing would run the services, so
    `up` stops before the account, the venvs or the multi-GB Open WebUI install."""
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    monkeypatch.setattr("stackctl.probe.SYSTEMD_MARKER", tmp_path / "absent")
    monkeypatch.setattr(
        "stackctl.setup.common.require_python_for_the_account", lambda python, stdlib: None
    )
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: no service manager: this Linux was not booted with systemd (no "
        "/run/systemd/system), so nothing would run the stack's services: run stackctl on a "
        "host booted with systemd (a container needs systemd as its PID 1; on WSL set "
        "systemd=true in /etc/wsl.conf)\n"
    )
    assert "Plan:" not in result.out
    # only the probe's questions (ollama --version, loginctl show-user, ...), no change
    changes = [c for c in cpu_box.calls() if c[0] in ("useradd", "chown", "pip", "loginctl")]
    assert [c for c in changes if c[1] not in ("show-user",)] == []
    assert [c for c in cpu_box.calls("python3.11") if c[1] != "-c"] == []  # no venv made
    assert not (isolated_home / "etc/stackctl").exists()
    assert not (isolated_home / "var/lib/stackctl").exists()


def test_user_scope_needs_a_user_manager_or_a_systemd_boot(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stackctl
) -> None:
    monkeypatch.setattr("stackctl.probe.SYSTEMD_MARKER", tmp_path / "absent")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    assert stackctl("up", "--yes").err.startswith("Error: no service manager: ")
    (tmp_path / "runtime/systemd").mkdir(parents=True)
    (tmp_path / "runtime/systemd/private").touch()  # a running user manager's socket
    config_file(isolated_home, free_ports_yaml())
    assert stackctl("up", "--dry-run").code == 0


def test_dry_run_with_blockers_prints_them_then_the_plan_and_exits_1(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stackctl
) -> None:
    cpu_box.remove("ollama")
    monkeypatch.setenv("PATH", str(cpu_box.bin))  # no other ollama on this machine's PATH
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr("stackctl.probe.SYSTEMD_MARKER", tmp_path / "absent")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    result = stackctl("up", "--dry-run")
    assert result.code == 1
    lines = result.out.splitlines()
    blocked = lines.index("Blocked: `stackctl up` changes nothing until this is fixed:")
    assert lines[blocked + 1].startswith("  1. no service manager: ")
    assert lines[blocked + 2].startswith("  2. Ollama is not installed. ")
    assert lines[blocked + 3] == (
        "       curl -fsSL https://ollama.com/download/ollama-linux-amd64.tar.zst | zstd -d | "
        "sudo tar x -C /usr"
    )
    plan = next(i for i, line in enumerate(lines) if line.startswith("Plan: "))
    assert blocked < plan and lines[-1] == "Dry run: nothing was changed."
    assert "$ systemctl --user daemon-reload" in result.out
    assert result.err == (
        "Error: the plan above is blocked: fix what is listed before it, then run `stackctl up`\n"
    )
    assert not (isolated_home / ".config/stackctl").exists()


def test_linger_off_adds_the_enable_linger_step(cpu_box: FakeBin, isolated_home: Path) -> None:
    cpu_box.scenario(linger="no")
    ctx = resolve_context(Config(), isolated_home / "stack.yaml", UpOptions())
    steps = {s.description: s for s in build_steps(ctx)}
    user = ctx.facts.user
    step = steps[f"Keep {user}'s services running after logout (systemd linger)"]
    assert step.commands == [f"loginctl enable-linger {user}"] and not step.check()
    step.apply(Progress(terminal=False))
    assert step.check() and ["loginctl", "enable-linger", user] in cpu_box.calls("loginctl")


def test_system_scope_plan(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    # this test's interpreter lives under /root (0700), which the check rightly refuses;
    # the check itself is tested below
    monkeypatch.setattr("stackctl.setup.common.require_python_for_the_account", lambda p, s: None)
    result = stackctl("up", "--dry-run")
    assert result.code == 0, result.err
    data = isolated_home / "var/lib/stackctl"
    units = isolated_home / "etc/systemd/system"
    out = result.out
    assert "backend ollama, system scope" in out
    assert f"config {isolated_home}/etc/stackctl/stack.yaml" in out
    assert (
        f"$ useradd --system --user-group --home-dir {data} --shell /usr/sbin/nologin stackctl"
        in out
    )
    assert f"$ mkdir -p -m 755 {data}/ollama/models" in out
    assert (
        f"$ chown -R stackctl:stackctl {isolated_home}/var/log/stackctl {data}/openwebui "
        f"{data}/ollama/models" in out
    )
    assert f"$ chown stackctl:stackctl {data}" in out
    assert "$ systemctl daemon-reload" in out
    assert (
        "$ systemctl enable --now stackctl-ollama.service stackctl-proxy.service "
        "stackctl-openwebui.service stackctl.target" in out
    )
    assert f"writes {units}/stackctl-ollama.service (0644)" in out
    assert "linger" not in out  # system services start at boot without it


def test_system_scope_account_and_ownership_steps(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    ctx = resolve_context(Config(), isolated_home / "etc/stackctl/stack.yaml", UpOptions())
    account = account_step(ctx)
    assert not account.check()
    account.apply(Progress(terminal=False))
    assert account.check()
    data = str(isolated_home / "var/lib/stackctl")
    assert cpu_box.calls("useradd") == [
        ["useradd", "--system", "--user-group", "--home-dir", data, "--shell",
         "/usr/sbin/nologin", "stackctl"]
    ]  # fmt: skip
    for directory in (isolated_home / "var/log/stackctl", Path(data) / "openwebui"):
        directory.mkdir(parents=True)
    owner = ownership_step(ctx)
    owner.apply(Progress(terminal=False))
    assert cpu_box.calls("chown") == [
        ["chown", "-R", "stackctl:stackctl", str(isolated_home / "var/log/stackctl"),
         f"{data}/openwebui"],
        ["chown", "stackctl:stackctl", data],
    ]  # fmt: skip


def test_ownership_covers_the_proxy_s_key_files_that_exist(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open WebUI's key is a named one, so api_keys_file may never be written: the step is
    done once the key files that exist belong to the services' account."""
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    keys = isolated_home / "etc/stackctl/proxy-keys"
    config = Config()
    config.proxy.api_keys_file = str(keys)
    ctx = resolve_context(config, isolated_home / "etc/stackctl/stack.yaml", UpOptions())
    monkeypatch.setattr("stackctl.setup.common._owner_ids", lambda *_: (os.getuid(), os.getgid()))
    data = isolated_home / "var/lib/stackctl"
    for directory in (
        isolated_home / "var/log/stackctl",
        data / "openwebui",
        data / "ollama/models",
    ):
        directory.mkdir(parents=True)
    step = ownership_step(ctx)
    assert step.check()  # neither key file exists yet
    store = keystore.store_path(keys)
    keystore.add_key(store, "alice")
    assert step.check()
    if os.geteuid() == 0:  # only root can give a file away
        os.chown(store, 4242, 4242)
        assert not step.check()
        step.apply(Progress(terminal=False))
        assert cpu_box.calls("chown")[-1] == [
            "chown",
            "stackctl:stackctl",
            str(ctx.paths.data_dir),
            str(store),
        ]


def test_secrets_are_generated_once_and_open_webui_gets_a_named_key(
    cpu_box: FakeBin, isolated_home: Path
) -> None:
    keys = isolated_home / "proxy-keys"
    path = config_file(
        isolated_home,
        f"expose: true\nproxy: {{api_keys_file: {keys}}}\n"
        "openwebui: {admin_email: admin@example.com}\n",
    )
    ctx = resolve_context(load(path), path, UpOptions())
    step = secrets_step(ctx)
    store = keystore.store_path(keys)
    assert step.files == [f"{ctx.paths.secrets_file} (0600)", f"{store} (0600)"]
    assert not step.check()
    step.apply(Progress(terminal=False))
    assert step.check()
    secrets = read_env_file(ctx.paths.secrets_file)
    key = secrets["OPENAI_API_KEYS"]  # Open WebUI's key: only its digest is in the store
    assert key.startswith("sk-stackctl-") and not keys.exists()
    (record,) = keystore.read_store(store)
    assert (record.name, record.digest) == ("openwebui", keystore.digest(key))
    assert key not in store.read_text() and store.stat().st_mode & 0o777 == 0o600
    assert ctx.stack.first_proxy_key == key  # stackctl's own checks use it too
    assert set(secrets) == {
        "WEBUI_SECRET_KEY",
        "OPENAI_API_KEYS",
        "WEBUI_ADMIN_EMAIL",
        "WEBUI_ADMIN_PASSWORD",
    }
    assert secrets["WEBUI_ADMIN_EMAIL"] == "admin@example.com"
    before = ctx.paths.secrets_file.read_text(), store.read_text()
    step.apply(Progress(terminal=False))
    assert (ctx.paths.secrets_file.read_text(), store.read_text()) == before  # never regenerated

    lines = summary_lines(ctx)
    sudo = "sudo " if ctx.scope == "system" else ""  # root's secrets.env, for a system stack
    assert (
        "  API key:          one per person or app: `stackctl keys add NAME` (printed once)"
        in lines
    )
    assert (
        "    log in as admin@example.com; the password is WEBUI_ADMIN_PASSWORD in "
        f"{ctx.paths.secrets_file} (`{sudo}grep WEBUI_ADMIN_PASSWORD {ctx.paths.secrets_file}`)"
        in lines
    )


def test_exposed_without_admin_email_generates_the_admin_and_says_how_to_log_in(
    cpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "GPU-Box_1.lan")
    keys = isolated_home / "proxy-keys"
    path = config_file(isolated_home, f"expose: true\nproxy: {{api_keys_file: {keys}}}\n")
    ctx = resolve_context(load(path), path, UpOptions())
    secrets_step(ctx).apply(Progress(terminal=False))
    secrets = read_env_file(ctx.paths.secrets_file)
    assert secrets["WEBUI_ADMIN_EMAIL"] == "admin@gpu-box-1.local"
    assert len(secrets["WEBUI_ADMIN_PASSWORD"]) >= 32
    assert ctx.paths.secrets_file.stat().st_mode & 0o777 == 0o600

    lines = summary_lines(ctx)
    sudo = "sudo " if ctx.scope == "system" else ""
    root = ctx.paths.data_dir / "caddy/pki/authorities/local/root.crt"
    assert lines[2:6] == [
        "  Open WebUI:       https://GPU-Box_1.lan:3443",
        "    log in as admin@gpu-box-1.local; the password is WEBUI_ADMIN_PASSWORD in "
        f"{ctx.paths.secrets_file} (`{sudo}grep WEBUI_ADMIN_PASSWORD {ctx.paths.secrets_file}`)",
        "    sign-up is off: add people in Admin Panel > Users > Add User (+)",
        "  OpenAI base URL:  https://GPU-Box_1.lan:4443/v1",
    ]
    assert f"  HTTPS:            Caddy's local CA; clients trust its root {root}:" in lines

    # exposed later, over a database that already has an admin: Open WebUI makes none
    import sqlite3

    database = ctx.paths.openwebui_data / "webui.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE user (id TEXT, email TEXT, name TEXT, role TEXT)")
        db.execute("INSERT INTO user VALUES ('1', 'alice@example.com', 'Alice', 'admin')")
    assert summary_lines(ctx)[3] == (
        "    Open WebUI already had accounts, so it made no new admin: log in as its admin "
        "(alice@example.com)"
    )


def test_a_revoked_open_webui_key_is_replaced_by_up(
    cpu_box: FakeBin, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = isolated_home / "proxy-keys"
    path = config_file(isolated_home, f"proxy: {{api_keys_file: {keys}}}\n")
    ctx = resolve_context(load(path), path, UpOptions())
    secrets_step(ctx).apply(Progress(terminal=False))
    old = read_env_file(ctx.paths.secrets_file)["OPENAI_API_KEYS"]
    keystore.revoke_key(keystore.store_path(keys), "openwebui")
    assert ctx.stack.first_proxy_key is None
    stale: list[str] = []
    step = secrets_step(ctx, stale)
    assert not step.check()
    capsys.readouterr()
    step.apply(Progress(terminal=False))
    new = read_env_file(ctx.paths.secrets_file)["OPENAI_API_KEYS"]
    assert new != old and ctx.stack.first_proxy_key == new
    assert stale == ["openwebui"]  # the units step restarts it (tests/test_e2e_keys.py)
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "      Open WebUI's key for the proxy: the named key 'openwebui'",
        "      openwebui restarts with its new OPENAI_API_KEYS once its unit is in place",
    ]


def test_a_stack_with_an_unnamed_key_keeps_giving_it_to_open_webui(
    cpu_box: FakeBin, isolated_home: Path
) -> None:
    keys = isolated_home / "proxy-keys"
    keys.write_text("# stackctl proxy API keys, one a line\nsk-stackctl-from-before\n")
    keys.chmod(0o600)
    path = config_file(isolated_home, f"expose: true\nproxy: {{api_keys_file: {keys}}}\n")
    ctx = resolve_context(load(path), path, UpOptions())
    secrets_step(ctx).apply(Progress(terminal=False))
    assert read_env_file(ctx.paths.secrets_file)["OPENAI_API_KEYS"] == "sk-stackctl-from-before"
    assert not keystore.store_path(keys).exists()
    assert "  API key:          the first key in " + str(keys) + " (mode 0600)" in summary_lines(
        ctx
    )


def test_without_open_webui_stackctl_keeps_an_unnamed_key_for_its_own_checks(
    cpu_box: FakeBin, isolated_home: Path
) -> None:
    keys = isolated_home / "proxy-keys"
    path = config_file(
        isolated_home,
        f"expose: true\nproxy: {{api_keys_file: {keys}}}\nopenwebui: {{enabled: false}}\n",
    )
    ctx = resolve_context(load(path), path, UpOptions())
    step = secrets_step(ctx)
    step.apply(Progress(terminal=False))
    assert step.check()
    key = keys.read_text().splitlines()[1]
    assert key.startswith("sk-stackctl-") and keys.stat().st_mode & 0o777 == 0o600
    assert ctx.stack.first_proxy_key == key


def test_a_port_taken_by_another_program_stops_the_plan(
    cpu_box: FakeBin, isolated_home: Path, stackctl
) -> None:
    # The port is held by another process, as it would be: held by pytest's own process,
    # the subprocesses `up` spawns while it reads the listeners (brew, ollama --version) share
    # the socket between fork and exec, and the listener may be named after one of them.
    port, ollama, proxy = free_ports(3)  # not 11434 and 4000: those may be taken on a test box
    taken = hosts.listen(port)
    try:
        path = config_file(
            isolated_home,
            f"ollama: {{port: {ollama}}}\nproxy: {{port: {proxy}}}\nopenwebui: {{port: {port}}}\n",
        )
        result = stackctl("up", "--yes")
    finally:
        hosts.stop(taken)
    assert result.code == 1
    assert result.err.startswith(f"Error: port {port} (openwebui) is taken by ")
    assert result.err.endswith(
        f"(pid {taken.pid}): stop it, or give openwebui.port another port in {path}, "
        "then run `stackctl up` again\n"
    )


@pytest.mark.parametrize("key", ["port", "openwebui_port"])
def test_a_front_port_taken_by_another_program_stops_the_plan(
    cpu_box: FakeBin, isolated_home: Path, stackctl, key: str
) -> None:
    (port,) = free_ports(1)
    taken = hosts.listen(port)  # another process (see the test above)
    try:
        path = config_file(
            isolated_home,
            f"expose: true\nproxy: {{api_keys: [sk-0123456789]}}\ntls: {{{key}: {port}}}\n",
        )
        path.chmod(0o600)
        result = stackctl("up", "--yes")
    finally:
        hosts.stop(taken)
    assert result.code == 1, result.out
    what = "front" if key == "port" else "tls.openwebui_port, Open WebUI over HTTPS"
    assert result.err.startswith(f"Error: port {port} ({what}) is taken by ")
    assert result.err.endswith(
        f"(pid {taken.pid}): stop it, or give tls.{key} another port in {path}, "
        "then run `stackctl up` again\n"
    )


ADVICE = (
    "install stackctl with a Python every account can read, e.g. Debian's: `sudo "
    "/usr/bin/python3 -m venv /opt/stackctl && sudo /opt/stackctl/bin/pip install stackctl`, "
    "then run `sudo /opt/stackctl/bin/stackctl up`"
)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every account can enter (pytest's own tmp dirs are mode 0700)."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for directory in [base, *base.rglob("*")]:
            if directory.is_dir() and not directory.is_symlink():
                directory.chmod(0o755)
        shutil.rmtree(base)


def fake_python(directory: Path) -> Path:
    """An interpreter file and its standard library under directory, all open to others."""
    python = directory / "bin/python3.11"
    python.parent.mkdir(parents=True)
    python.touch(mode=0o755)
    (directory / "lib/python3.11").mkdir(parents=True)
    return python


def test_system_scope_needs_an_interpreter_the_account_can_reach(open_dir: Path) -> None:
    from stackctl.errors import StackctlError
    from stackctl.setup.common import require_python_for_the_account

    private = open_dir / "root-home"
    real = fake_python(open_dir / "usr")
    python = private / ".local/pipx/venvs/stackctl/bin/python"
    python.parent.mkdir(parents=True)
    python.symlink_to(real)
    private.chmod(0o700)
    with pytest.raises(StackctlError) as err:
        require_python_for_the_account(python, open_dir / "usr/lib/python3.11")
    assert err.value.format_message() == (
        f"the proxy service runs {python} as the 'stackctl' account, which cannot enter "
        f"{private}: {ADVICE}"
    )
    private.chmod(0o755)
    require_python_for_the_account(python, open_dir / "usr/lib/python3.11")


def test_a_venv_whose_python_resolves_into_a_closed_directory_is_refused(open_dir: Path) -> None:
    """The issue 8 defect: a venv in /opt whose python is a symlink into pyenv under /root
    passed the check, and the proxy unit then failed with status=203/EXEC."""
    from stackctl.errors import StackctlError
    from stackctl.setup.common import require_python_for_the_account

    pyenv = open_dir / "root/.pyenv/versions/3.11.7"
    real = fake_python(pyenv)
    (open_dir / "root").chmod(0o700)
    venv_python = open_dir / "opt/stackctl/bin/python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(real)
    with pytest.raises(StackctlError) as err:
        require_python_for_the_account(venv_python, pyenv / "lib/python3.11")
    assert err.value.format_message() == (
        f"the proxy service runs {venv_python} (a link to {real}) as the 'stackctl' account, "
        f"which cannot enter {open_dir / 'root'}: {ADVICE}"
    )


def test_a_link_through_a_closed_directory_is_refused(open_dir: Path) -> None:
    """The venv's python may end in an open place and still pass through a closed one on the
    way (a link in /root to /usr/bin/python3): the kernel must enter every hop."""
    from stackctl.errors import StackctlError
    from stackctl.setup.common import require_python_for_the_account

    real = fake_python(open_dir / "usr")
    hop = open_dir / "root/.local/bin/python3.11"
    hop.parent.mkdir(parents=True)
    hop.symlink_to(real)
    (open_dir / "root").chmod(0o700)
    venv_python = open_dir / "opt/stackctl/bin/python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to("../../../root/.local/bin/python3.11")
    with pytest.raises(StackctlError) as err:
        require_python_for_the_account(venv_python, open_dir / "usr/lib/python3.11")
    assert err.value.format_message() == (
        f"the proxy service runs {venv_python} (a link to {hop}) as the 'stackctl' account, "
        f"which cannot enter {open_dir / 'root'}: {ADVICE}"
    )


def test_an_interpreter_whose_standard_library_is_closed_is_refused(open_dir: Path) -> None:
    """A copied (not symlinked) interpreter still loads the standard library of its
    sys.base_prefix: the account must reach that too."""
    from stackctl.errors import StackctlError
    from stackctl.setup.common import require_python_for_the_account

    python = fake_python(open_dir / "opt/python")
    stdlib = open_dir / "root/.pyenv/versions/3.11.7/lib/python3.11"
    stdlib.mkdir(parents=True)
    (open_dir / "root").chmod(0o700)
    with pytest.raises(StackctlError) as err:
        require_python_for_the_account(python, stdlib)
    assert err.value.format_message() == (
        f"the proxy service runs {python} (with its standard library in {stdlib}) as the "
        f"'stackctl' account, which cannot enter {open_dir / 'root'}: {ADVICE}"
    )


def test_an_offline_open_webui_needs_its_embedding_model_cached(
    cpu_box: FakeBin, isolated_home: Path, stackctl
) -> None:
    """OFFLINE_MODE in openwebui.env (the air-gapped switch): refused until the embedding
    model is in Open WebUI's cache, since Open WebUI would not start without it."""
    path = config_file(isolated_home, free_ports_yaml(", env: {OFFLINE_MODE: 'true'}"))
    cache = isolated_home / ".local/share/stackctl/openwebui/cache/embedding/models"
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        f"Error: openwebui.env in {path} starts Open WebUI offline, but its embedding model "
        f"sentence-transformers/all-MiniLM-L6-v2 is not in {cache} yet (Open WebUI would not "
        "start): start it online once (drop OFFLINE_MODE/HF_HUB_OFFLINE, run `stackctl up`, "
        "then put it back), or copy the model there from a machine that has it (`hf download "
        f"sentence-transformers/all-MiniLM-L6-v2 --cache-dir {cache}`)\n"
    )
    repo = cache / "models--sentence-transformers--all-MiniLM-L6-v2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text("c9745ed1d9f207416be6d2e6f8de32d1f16199bf")
    (repo / "snapshots/c9745ed1d9f207416be6d2e6f8de32d1f16199bf").mkdir(parents=True)
    (repo / "snapshots/c9745ed1d9f207416be6d2e6f8de32d1f16199bf/config.json").write_text("{}")
    result = stackctl("up", "--dry-run")
    assert result.code == 0, result.out + result.err


def test_an_exposed_stack_with_inline_keys_in_a_readable_config_stops_before_any_change(
    cpu_box: FakeBin, isolated_home: Path, stackctl
) -> None:
    ollama, proxy = free_ports(2)
    path = config_file(
        isolated_home,
        f"expose: true\nollama: {{port: {ollama}}}\nproxy: {{port: {proxy}, "
        "api_keys: [sk-0123456789]}\nopenwebui: {enabled: false}\n",
    )
    path.chmod(0o644)
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        f"Error: {path} holds proxy.api_keys but others can read it, and the proxy would "
        f"listen on the network: run `chmod 600 {path}`, or move the keys to "
        "proxy.api_keys_file (a file of mode 0600).\n"
    )
    assert not cpu_box.calls("systemctl")  # nothing installed or started
    assert cpu_box.calls("ollama") == [["ollama", "--version"]]  # the probe only
    path.chmod(0o600)
    assert "holds proxy.api_keys" not in stackctl("up", "--dry-run").err
