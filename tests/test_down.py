"""`stackctl down [--purge] [--yes]`: only stackctl's units go; --purge lists, asks, deletes
what stackctl created, and keeps Ollama's own model store. (Removing installed units under
the real systemd user manager is in test_e2e_linux.py, launchd's in test_up_macos.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl import plan
from tests.fakes.installer import FakeBin


def make_user_stack(home: Path) -> dict[str, Path]:
    """What a user-scope `up` leaves behind, plus Ollama's own store and a stranger's file."""
    config_dir = home / ".config/stackctl"
    data = home / ".local/share/stackctl"
    files = {
        "config": config_dir / "stack.yaml",
        "secrets": config_dir / "secrets.env",
        "webui_db": data / "openwebui/webui.db",
        "venv": data / "venvs/openwebui/bin/python",
        "hf": data / "huggingface/hub/models--google--gemma-3-1b-it/refs/main",
        "backup": data / "backups/stackctl-proxy.service.20260101T000000Z",
        "log": home / ".local/state/stackctl/log/proxy.log",
        "ollama_models": home / ".ollama/models/blobs/sha256-abc",
        "stranger": home / ".config/other-app/settings.ini",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#" + "x" * 98 + "\n")  # 100 bytes; a comment is a valid (empty) config
    files["secrets"].chmod(0o600)
    return files


def test_down_with_nothing_installed_says_so(stackctl) -> None:
    result = stackctl("down")
    assert result.code == 0
    assert result.out == "No stackctl services are installed.\n"


def test_purge_without_a_terminal_refuses_and_deletes_nothing(
    isolated_home: Path, stackctl
) -> None:
    files = make_user_stack(isolated_home)
    result = stackctl("down", "--purge")
    assert result.code == 1
    assert result.err == (
        "Error: stdin is not a terminal, so stackctl cannot ask before changing this machine: "
        "re-run with --yes to apply --purge (it deletes the above)\n"
    )
    assert all(path.exists() for path in files.values())


def test_purge_lists_asks_and_deletes_only_what_stackctl_made(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    files = make_user_stack(isolated_home)
    monkeypatch.setattr(plan, "stdin_is_terminal", lambda: True)
    result = stackctl("down", "--purge", input="y\n")
    assert result.code == 0, result.err
    data = isolated_home / ".local/share/stackctl"
    config_dir = isolated_home / ".config/stackctl"
    assert result.out.splitlines() == [
        "--purge deletes:",
        f"  {data}/openwebui  (Open WebUI's data: accounts, chats, uploads, 100 B)",
        f"  {data}/huggingface  (Hugging Face models downloaded for vLLM, 100 B)",
        f"  {data}/venvs/openwebui  (Open WebUI's venv, 100 B)",
        f"  {config_dir}/stack.yaml  (the config file, 100 B)",
        f"  {config_dir}/secrets.env  (the secrets file, 100 B)",
        f"  {data}  (stackctl's data dir (unit records, backups), 100 B)",
        f"  {isolated_home}/.local/state/stackctl/log  (stackctl's logs, 100 B)",
        "Delete all of this for good? [y/N]: y",
        "No stackctl services are installed.",
        "Deleted 7 items.",
        f"kept {isolated_home}/.ollama/models: Ollama's own model store, shared with any other "
        "Ollama here (remove models with `ollama rm MODEL`)",
        "To remove stackctl itself: pipx uninstall stackctl (or delete the venv you installed it into)",
    ]
    gone = ["config", "secrets", "webui_db", "venv", "hf", "backup", "log"]
    assert [name for name in gone if files[name].exists()] == []
    assert not data.exists() and not config_dir.exists()
    assert files["ollama_models"].exists() and files["stranger"].exists()


@pytest.mark.systemd
def test_purge_without_a_terminal_refuses_before_removing_the_units(systemd_user, stackctl) -> None:
    """The question is decided first: a refused purge leaves the services as they were."""
    from stackctl.config import Config
    from stackctl.services.base import Unit
    from stackctl.stack import resolve_stack

    manager = resolve_stack(Config()).manager
    unit = Unit("ollama", "stackctl-ollama.service", "[Service]\nExecStart=/bin/sleep 600\n")
    manager.install([unit])
    files = make_user_stack(systemd_user.home)
    result = stackctl("down", "--purge")
    assert result.code == 1
    assert result.err.endswith("re-run with --yes to apply --purge (it deletes the above)\n")
    assert (systemd_user.unit_dir / unit.filename).exists()
    assert manager.installed_services() == ["ollama"]
    assert systemd_user.show(unit.filename, "ActiveState") == {"ActiveState": "active"}
    assert all(path.exists() for path in files.values())

    result = stackctl("down", "--purge", "--yes")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    at = lines.index("Stopped and removed:")
    assert lines[0] == "--purge deletes:" and lines[at - 1].endswith("(stackctl's logs, 100 B)")
    assert lines[at + 1 : at + 3] == [
        f"  {systemd_user.unit_dir / unit.filename}",
        "Deleted 7 items.",
    ]
    assert not (systemd_user.unit_dir / unit.filename).exists()


def test_purge_keeps_a_config_file_outside_stackctls_directories(
    isolated_home: Path, tmp_path: Path, stackctl
) -> None:
    """stackctl deletes only what it created: a --config file of the user's own is kept."""
    files = make_user_stack(isolated_home)
    mine = tmp_path / "projects/llm/stack.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("backend: ollama\n")
    result = stackctl("--config", str(mine), "down", "--purge", "--yes")
    assert result.code == 0, result.err
    assert mine.exists() and not files["config"].exists()
    assert str(mine) not in result.out.split("Deleted")[0]
    assert f"kept {mine}: stackctl did not create it (it is outside its directories)" in (
        result.out.splitlines()
    )


def test_purge_answered_no_deletes_nothing(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    files = make_user_stack(isolated_home)
    monkeypatch.setattr(plan, "stdin_is_terminal", lambda: True)
    result = stackctl("down", "--purge", input="n\n")
    assert result.code == 1
    assert all(path.exists() for path in files.values())


def test_system_purge_removes_the_account_and_its_models(
    isolated_home: Path, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    fake_bin.scenario(users={"stackctl": "stackctl:x:998:998::/var/lib/stackctl:/usr/sbin/nologin"})
    models = isolated_home / "var/lib/stackctl/ollama/models/blobs/sha256-abc"
    models.parent.mkdir(parents=True)
    models.write_text("weights")
    result = stackctl("down", "--purge", "--yes")
    assert result.code == 0, result.err
    assert (
        f"  {isolated_home}/var/lib/stackctl/ollama/models  (Ollama models of the system stack, 7 B)"
        in result.out
    )
    assert "Removed the service account: userdel stackctl" in result.out
    assert fake_bin.calls("userdel") == [["userdel", "stackctl"]]
    assert not (isolated_home / "var/lib/stackctl").exists()
