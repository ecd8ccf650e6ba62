"""The record of what stackctl wrote: hashes, drift, backups, and which services are installed."""

from __future__ import annotations

import json

import pytest

from stackctl.errors import StackctlError
from stackctl.paths import paths_for
from stackctl.services.base import Unit
from stackctl.services.state import (
    NothingInstalled,
    UnitRecord,
    drift,
    remove_unit,
    sha256,
    write_unit,
)


@pytest.fixture
def record() -> UnitRecord:
    return UnitRecord(paths_for("linux", "user"))


def unit(service: str, text: str, secret: bool = False) -> Unit:
    return Unit(service, f"stackctl-{service}.service", text, secret)


def test_write_new_unchanged_changed(record):
    path = record.paths.unit_dir / "stackctl-proxy.service"
    first = write_unit(record, path, unit("proxy", "[Service]\nA=1\n"), path.name)
    assert (first.status, first.backup) == ("new", None)
    assert path.stat().st_mode & 0o777 == 0o644
    assert write_unit(record, path, unit("proxy", "[Service]\nA=1\n"), path.name).status == (
        "unchanged"
    )
    changed = write_unit(record, path, unit("proxy", "[Service]\nA=2\n"), path.name)
    assert (changed.status, changed.backup) == ("changed", None)  # ours: no backup needed
    record.save()
    data = json.loads(record.file.read_text())
    assert data["units"][str(path)] == {
        "service": "proxy",
        "name": "stackctl-proxy.service",
        "sha256": sha256("[Service]\nA=2\n"),
        "content": "[Service]\nA=2\n",
    }
    assert record.file.stat().st_mode & 0o777 == 0o600  # it keeps copies of secret plists


def test_a_secret_unit_is_private_and_a_hand_edit_is_backed_up(record):
    path = record.paths.unit_dir / "dev.stackctl.openwebui.plist"
    write_unit(record, path, unit("openwebui", "<plist>key</plist>\n", secret=True), path.name)
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("<plist>edited</plist>\n")
    [found] = drift(record)
    assert found.path == path
    assert found.diff == (
        f"--- {path} (written by stackctl)\n+++ {path} (on disk)\n"
        "@@ -1 +1 @@\n-<plist>key</plist>\n+<plist>edited</plist>\n"
    )
    change = write_unit(record, path, unit("openwebui", "<plist>new</plist>\n", True), path.name)
    assert change.status == "changed"
    assert change.backup.parent == record.paths.backups_dir
    assert change.backup.read_text() == "<plist>edited</plist>\n"
    assert change.backup.stat().st_mode & 0o777 == 0o600
    assert drift(record) == []


def test_a_file_stackctl_never_wrote_is_backed_up_before_it_is_replaced(record):
    path = record.paths.unit_dir / "stackctl-ollama.service"
    path.parent.mkdir(parents=True)
    path.write_text("[Service]\nExecStart=/my/own/ollama serve\n")
    change = write_unit(record, path, unit("ollama", "[Service]\n"), path.name)
    assert change.backup is not None and "my/own" in change.backup.read_text()


def test_deleted_unit_is_drift_and_removal_backs_up_edits(record):
    kept = record.paths.unit_dir / "stackctl-proxy.service"
    gone = record.paths.unit_dir / "stackctl-ollama.service"
    write_unit(record, kept, unit("proxy", "a\n"), kept.name)
    write_unit(record, gone, unit("ollama", "b\n"), gone.name)
    gone.unlink()
    [found] = drift(record)
    assert found.diff.startswith(f"--- {gone} (written by stackctl)\n+++ {gone} (deleted)\n")
    kept.write_text("a, edited\n")
    saved = remove_unit(record, kept)
    assert saved is not None and saved.read_text() == "a, edited\n"
    assert not kept.exists() and record.get(kept) is None
    assert remove_unit(record, gone) is None


def test_services_and_selection(record):
    for service in ("openwebui", "ollama", "proxy"):
        path = record.paths.unit_dir / f"stackctl-{service}.service"
        write_unit(record, path, unit(service, service), path.name)
    target = record.paths.unit_dir / "stackctl.target"
    write_unit(record, target, Unit("target", "stackctl.target", "t"), "stackctl.target")
    record.save()
    again = UnitRecord(record.paths)
    assert again.services() == ["ollama", "proxy", "openwebui"]
    assert again.select([]) == ["ollama", "proxy", "openwebui"]
    assert again.select(["openwebui", "ollama", "openwebui"]) == ["ollama", "openwebui"]
    assert again.unit_name("proxy") == "stackctl-proxy.service"
    with pytest.raises(StackctlError) as failure:
        again.select(["ollama", "webui"])
    assert failure.value.format_message() == (
        "no service named 'webui' is installed: choose from ollama, proxy, openwebui"
    )


def test_nothing_installed_says_where_the_stack_is(record, isolated_home):
    with pytest.raises(NothingInstalled) as failure:
        record.select([])
    assert failure.value.format_message() == (
        "no stackctl services are installed: run `stackctl up`"
    )
    system = paths_for("linux", "system").state_file
    system.parent.mkdir(parents=True)
    system.write_text('{"version": 1, "units": {}}')
    with pytest.raises(NothingInstalled) as failure:
        record.select([])
    assert failure.value.format_message() == (
        "no stackctl services are installed for this user, but a system-wide stack is: "
        "run the command with sudo"
    )


def test_other_keys_survive_and_an_empty_record_removes_the_file(record):
    record.file.parent.mkdir(parents=True)
    record.file.write_text('{"version": 1, "units": {}, "models": ["gemma3:27b"]}')
    fresh = UnitRecord(record.paths)
    path = fresh.paths.unit_dir / "stackctl-proxy.service"
    write_unit(fresh, path, unit("proxy", "x"), path.name)
    fresh.save()
    assert json.loads(fresh.file.read_text())["models"] == ["gemma3:27b"]
    fresh.forget(path)
    fresh.save()
    assert json.loads(fresh.file.read_text()) == {
        "version": 1,
        "units": {},
        "models": ["gemma3:27b"],
    }

    fresh.file.write_text('{"version": 1, "units": {}}')
    UnitRecord(fresh.paths).save()
    assert not fresh.file.exists()


def test_a_corrupt_state_file_says_what_to_do(record):
    record.file.parent.mkdir(parents=True)
    record.file.write_text("{not json")
    with pytest.raises(StackctlError) as failure:
        UnitRecord(record.paths)
    assert failure.value.format_message().startswith(f"cannot read {record.file} (")
    assert failure.value.format_message().endswith(
        "): move it aside and run `stackctl up` to write the units again"
    )
