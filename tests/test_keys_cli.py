"""`stackctl keys add | list | revoke`: exact output, and a store that holds only digests."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from stackctl import keystore
from stackctl.keystore import Usage

KEY_SHAPE = re.compile(r"^sk-stackctl-[A-Za-z0-9_-]{43}$")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(f"proxy:\n  api_keys_file: '{tmp_path / 'proxy-keys'}'\n")
    path.chmod(0o600)
    return path


def test_add_prints_the_key_once_and_stores_only_its_digest(stackctl, config, tmp_path):
    result = stackctl("--config", str(config), "keys", "add", "alice", "--rpm", "5")
    assert result.code == 0
    key = result.out.strip()
    assert KEY_SHAPE.match(key) and result.out == key + "\n"
    store = tmp_path / "proxy-keys.json"
    assert result.err == (
        "Added key 'alice' (5 requests a minute). It is shown only this once: "
        f"{store} keeps its hash. A running proxy takes it within a second.\n"
    )
    assert store.stat().st_mode & 0o777 == 0o600
    text = store.read_text()
    assert key not in text
    (entry,) = json.loads(text)["keys"]
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert (entry["name"], entry["rpm"], entry["tokens_per_day"]) == ("alice", 5, None)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", entry["created"])

    both = stackctl(
        "--config", str(config), "keys", "add", "bob", "--rpm", "60", "--tokens-per-day", "1000"
    )
    assert both.err.startswith("Added key 'bob' (60 requests a minute, 1000 tokens a day). ")
    plain = stackctl("--config", str(config), "keys", "add", "ci")
    assert plain.err.startswith("Added key 'ci'. It is shown only this once: ")
    assert len({key, both.out, plain.out}) == 3


def test_add_refuses_a_taken_or_bad_name_and_a_zero_limit(stackctl, config):
    assert stackctl("--config", str(config), "keys", "add", "alice").code == 0
    cases = {
        "alice": "Error: a key named 'alice' exists already: choose another name, or revoke it "
        "first (`stackctl keys revoke alice`).\n",
        "key-2": "Error: 'key-2' cannot name a key (names of the form key-N are how unnamed "
        "keys are shown): choose another name.\n",
        "-x": None,  # click reads it as an option
        "a b": "Error: 'a b' cannot name a key (1-63 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit): choose another name.\n",
    }
    for name, error in cases.items():
        result = stackctl("--config", str(config), "keys", "add", name)
        assert result.code != 0 and result.out == ""
        if error is not None:
            assert result.err == error
    zero = stackctl("--config", str(config), "keys", "add", "zed", "--rpm", "0")
    assert zero.code == 2 and "0 is not in the range x>=1" in zero.err


def test_list_shows_named_and_unnamed_keys_never_a_key(stackctl, tmp_path, isolated_home):
    keys_file = tmp_path / "proxy-keys"
    keys_file.write_text("# old keys\nsk-old-file-key-1\n")
    keys_file.chmod(0o600)
    config = tmp_path / "stack.yaml"
    config.write_text(f"proxy:\n  api_keys: [sk-inline-key-1]\n  api_keys_file: '{keys_file}'\n")
    config.chmod(0o600)
    added = stackctl("--config", str(config), "keys", "add", "alice", "--tokens-per-day", "500")
    created = json.loads((tmp_path / "proxy-keys.json").read_text())["keys"][0]["created"]
    # what the proxy wrote: alice used 120 tokens today, at 12:00:00 UTC on 2 Dec 2026
    now = time.time()
    used_at = 1796212800.0
    usage = keystore.usage_path(isolated_home / ".local/share/stackctl")
    keystore.write_usage(usage, {"alice": Usage(used_at, keystore.utc_day(now), 120)})

    result = stackctl("--config", str(config), "keys", "list")
    assert result.code == 0
    header, *lines = result.out.splitlines()
    assert re.split(r"\s{2,}", header) == [
        "NAME", "CREATED", "LAST USED", "REQUESTS/MIN", "TOKENS/DAY", "TOKENS TODAY"
    ]  # fmt: skip
    rows = [re.split(r"\s{2,}", line) for line in lines]
    assert rows == [
        ["key-1", "unnamed, in proxy.api_keys", "never", "-", "-", "0"],
        ["key-2", f"unnamed, in {keys_file}", "never", "-", "-", "0"],
        ["alice", created, "2026-12-02T12:00:00Z", "-", "500", "120"],
    ]
    assert "sk-" not in result.out

    listed = json.loads(stackctl("--config", str(config), "keys", "list", "--json").out)
    assert listed[2] == {
        "name": "alice",
        "created": created,
        "last_used": "2026-12-02T12:00:00Z",
        "rpm": None,
        "tokens_per_day": 500,
        "tokens_today": 120,
        "source": "store",
    }
    assert [row["source"] for row in listed[:2]] == ["proxy.api_keys", str(keys_file)]
    assert added.out.strip() not in json.dumps(listed)


def test_list_without_keys(stackctl, config, tmp_path):
    assert stackctl("--config", str(config), "keys", "list").out == (
        "No keys yet: the proxy refuses every request. `stackctl keys add NAME` makes one.\n"
    )
    bare = tmp_path / "bare.yaml"
    bare.write_text("backend: ollama\n")
    assert stackctl("--config", str(bare), "keys", "list").out == (
        "No keys: the proxy answers anyone on 127.0.0.1. To keep named keys, set "
        "proxy.api_keys_file in stack.yaml (they are kept next to it).\n"
    )
    assert stackctl("--config", str(bare), "keys", "list", "--json").out == "[]\n"


def test_revoke(stackctl, config, tmp_path):
    stackctl("--config", str(config), "keys", "add", "alice")
    stackctl("--config", str(config), "keys", "add", "openwebui")
    result = stackctl("--config", str(config), "keys", "revoke", "alice")
    assert (result.code, result.out) == (
        0,
        "Revoked key 'alice': a running proxy refuses it within a second.\n",
    )
    names = [k["name"] for k in json.loads((tmp_path / "proxy-keys.json").read_text())["keys"]]
    assert names == ["openwebui"]
    again = stackctl("--config", str(config), "keys", "revoke", "alice")
    assert (again.code, again.err) == (
        1,
        "Error: no key is named 'alice': `stackctl keys list` shows the keys.\n",
    )
    webui = stackctl("--config", str(config), "keys", "revoke", "openwebui")
    assert webui.out == (
        "Revoked key 'openwebui': a running proxy refuses it within a second.\n"
        "Open WebUI used this key: `stackctl up` gives it a new one.\n"
    )


def test_unnamed_keys_are_revoked_where_they_are_written(stackctl, tmp_path):
    keys_file = tmp_path / "proxy-keys"
    keys_file.write_text("sk-old-file-key-1\nsk-old-file-key-2\n")
    keys_file.chmod(0o600)
    config = tmp_path / "stack.yaml"
    config.write_text(f"proxy:\n  api_keys: [sk-inline-key-1]\n  api_keys_file: '{keys_file}'\n")
    inline = stackctl("--config", str(config), "keys", "revoke", "key-1")
    assert inline.err == (
        "Error: 'key-1' is an unnamed key: remove it from proxy.api_keys in stack.yaml and "
        "restart the proxy (`stackctl restart proxy`).\n"
    )
    second = stackctl("--config", str(config), "keys", "revoke", "key-3")
    assert second.err == (
        f"Error: 'key-3' is an unnamed key: delete its line (the 2nd key) from {keys_file} "
        "(the proxy reloads that file within a second).\n"
    )


def test_keys_need_a_key_file_in_the_config(stackctl, tmp_path, isolated_home):
    config = tmp_path / "stack.yaml"
    config.write_text("backend: ollama\n")
    result = stackctl("--config", str(config), "keys", "add", "alice")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"Error: {config} sets no proxy.api_keys_file, and the named keys are kept next to it: "
        f"add `api_keys_file: {isolated_home / '.config/stackctl/proxy-keys'}` under `proxy:`, "
        "then run `stackctl up` (it gives Open WebUI a key of its own).\n"
    )


def test_a_store_others_can_read_or_a_broken_one_is_refused(stackctl, config, tmp_path):
    stackctl("--config", str(config), "keys", "add", "alice")
    store = tmp_path / "proxy-keys.json"
    store.chmod(0o644)
    result = stackctl("--config", str(config), "keys", "list")
    assert result.err == (
        f"Error: {store} holds secrets but others can read it: run `chmod 600 {store}`\n"
    )
    store.chmod(0o600)
    store.write_text('{"version": 1, "keys": [{"name": "alice"}]}')
    assert stackctl("--config", str(config), "keys", "add", "bob").err == (
        f"Error: {store} is not a key store stackctl can read (a key without sha256): restore "
        "it from a backup, or delete it and add the keys again with `stackctl keys add NAME`.\n"
    )


def test_root_keeps_the_owner_of_the_store_it_rewrites(tmp_path):
    """sudo stackctl keys add, system scope: the proxy (another account) must still read it."""
    import os

    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another account")
    keys_file = tmp_path / "proxy-keys"
    keys_file.write_text("")
    os.chown(keys_file, 4242, 4343)
    store = keystore.store_path(keys_file)
    keystore.add_key(store, "alice", owner_of=keys_file)
    assert (store.stat().st_uid, store.stat().st_gid) == (4242, 4343)
    os.chown(store, 5151, 5252)
    keystore.add_key(store, "bob", owner_of=keys_file)
    assert (store.stat().st_uid, store.stat().st_gid) == (5151, 5252)
    assert store.stat().st_mode & 0o777 == 0o600


def test_a_store_the_user_cannot_read_is_named(stackctl, config, tmp_path, monkeypatch):
    stackctl("--config", str(config), "keys", "add", "alice")
    store = tmp_path / "proxy-keys.json"

    real = Path.read_text

    def refuse(self, *args, **kwargs):  # as root, chmod cannot keep the test from reading
        if self == store:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    result = stackctl("--config", str(config), "keys", "revoke", "alice")
    assert (result.code, result.err) == (
        1,
        f"Error: {store} cannot be read by you: run the command as its owner (e.g. with sudo "
        "for the system stack).\n",
    )


def test_doctor_checks_the_key_files_and_that_a_key_is_left(stackctl, config, tmp_path):
    def keys_findings() -> list[tuple[str, str]]:
        report = json.loads(stackctl("--config", str(config), "doctor", "--json").out)
        return [(f["severity"], f["text"]) for f in report["findings"] if f["check"] == "keys"]

    assert keys_findings() == []  # nothing written yet: the first `up` writes the files
    key_file = tmp_path / "proxy-keys"
    key_file.write_text("# stackctl proxy API keys, one a line\nsk-stackctl-0123456789\n")
    key_file.chmod(0o600)
    assert stackctl("--config", str(config), "keys", "add", "alice").code == 0
    assert keys_findings() == [("ok", "the proxy takes 2 keys: key-1, alice")]

    store = keystore.store_path(key_file)
    store.chmod(0o644)
    [(severity, text)] = keys_findings()
    assert severity == "error" and text.startswith(f"{store} ") and "chmod 600" in text
    store.chmod(0o600)

    key_file.write_text("# stackctl proxy API keys, one a line\n")
    assert stackctl("--config", str(config), "keys", "revoke", "alice").code == 0
    assert keys_findings() == [
        (
            "error",
            "the proxy has no key left, so it refuses every request: add one with `stackctl "
            "keys add NAME`; `stackctl up` gives Open WebUI its own",
        )
    ]
