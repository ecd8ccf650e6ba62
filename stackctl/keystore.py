"""Named API keys for the proxy: a store of SHA-256 digests, never the keys themselves.

`stackctl keys add NAME` makes a key, prints it once and keeps only its digest, with its
name, when it was made and its optional limits (requests a minute, tokens a day). The store
is `<proxy.api_keys_file>.json`, next to the file of unnamed keys it extends, mode 0600,
written atomically: the proxy, which watches it, never reads half a file.

The keys of `proxy.api_keys` and the lines of `proxy.api_keys_file` keep working as unnamed
keys, `key-1`, `key-2`, … in that order. The proxy keeps what each key used (when last, how
many tokens today) in memory and writes it to a usage file of its own, never per request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets as _random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackctl.errors import StackctlError
from stackctl.fsutil import SECRET_MODE, atomic_write, is_private
from stackctl.secrets import InsecureSecretFile, proxy_api_keys

if TYPE_CHECKING:
    from stackctl.config.model import ProxySection

KEY_PREFIX = "sk-stackctl-"
NAME_RULE = "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
UNNAMED_PATTERN = re.compile(r"^key-[0-9]+$")  # the names unnamed keys are shown by
STORE_VERSION = 1
USAGE_FILE = "proxy-key-usage.json"
OPENWEBUI_KEY = "openwebui"  # the key `stackctl up` makes for Open WebUI
DAY = 86400


@dataclass(frozen=True)
class KeyRecord:
    """One key the proxy accepts, as the store (or the unnamed key files) describe it."""

    name: str
    digest: bytes  # SHA-256 of the key
    created: str = ""  # ISO 8601, UTC; "" for an unnamed key
    rpm: int | None = None  # requests a minute
    tokens_per_day: int | None = None  # prompt + completion tokens a UTC day
    source: str = ""  # "": the store; else where the unnamed key is written

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.digest.hex(),
            "created": self.created,
            "rpm": self.rpm,
            "tokens_per_day": self.tokens_per_day,
        }


@dataclass
class Usage:
    """What one key used: written by the proxy, read by `keys list`."""

    last_used: float | None = None  # Unix time
    day: int = 0  # the UTC day (days since the epoch) `tokens` were counted on
    tokens: int = 0

    def tokens_on(self, day: int) -> int:
        return self.tokens if self.day == day else 0


class BadKeyStore(StackctlError):
    """The key store is not a file stackctl wrote."""

    def __init__(self, path: Path, reason: str):
        super().__init__(
            f"{path} is not a key store stackctl can read ({reason}): restore it from a "
            "backup, or delete it and add the keys again with `stackctl keys add NAME`."
        )


class UnreadableKeyStore(StackctlError):
    def __init__(self, path: Path):
        super().__init__(
            f"{path} cannot be read by you: run the command as its owner (e.g. with sudo for "
            "the system stack)."
        )


class InvalidKeyName(StackctlError):
    def __init__(self, name: str):
        if UNNAMED_PATTERN.match(name):
            reason = "names of the form key-N are how unnamed keys are shown"
        else:
            reason = NAME_RULE
        super().__init__(f"'{name}' cannot name a key ({reason}): choose another name.")


class KeyNameTaken(StackctlError):
    def __init__(self, name: str):
        super().__init__(
            f"a key named '{name}' exists already: choose another name, or revoke it first "
            f"(`stackctl keys revoke {name}`)."
        )


class UnknownKey(StackctlError):
    def __init__(self, name: str):
        super().__init__(f"no key is named '{name}': `stackctl keys list` shows the keys.")


class UnnamedKeyRevoke(StackctlError):
    """`keys revoke key-N`: an unnamed key lives in a file stackctl does not rewrite."""

    def __init__(self, record: KeyRecord, index: int):
        if record.source == "proxy.api_keys":
            where = "remove it from proxy.api_keys in stack.yaml and restart the proxy"
            fix = "(`stackctl restart proxy`)"
        else:
            where = f"delete its line (the {_ordinal(index)} key) from {record.source}"
            fix = "(the proxy reloads that file within a second)"
        super().__init__(f"'{record.name}' is an unnamed key: {where} {fix}.")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def digest(key: str | bytes) -> bytes:
    """The SHA-256 of a key: what the store keeps and the proxy looks keys up by."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def new_key() -> str:
    """A fresh key: 256 random bits, URL- and shell-safe, recognisable by its prefix."""
    return KEY_PREFIX + _random.token_urlsafe(32)


def store_path(api_keys_file: str | Path) -> Path:
    """Where the named keys are kept: next to proxy.api_keys_file, with `.json` added."""
    path = Path(api_keys_file).expanduser()
    return path.with_name(path.name + ".json")


def usage_path(data_dir: Path) -> Path:
    """Where the proxy writes what each key used (its data dir: the proxy can write there)."""
    return data_dir / USAGE_FILE


def utc_day(now: float) -> int:
    return int(now // DAY)


def _positive(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"a limit of {value!r}")
    return value


def _record(path: Path, entry: Any) -> KeyRecord:
    if not isinstance(entry, dict):
        raise BadKeyStore(path, "a key that is not an object")
    try:
        name, hexdigest = entry["name"], entry["sha256"]
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ValueError(f"the name {name!r}")
        raw = bytes.fromhex(hexdigest) if isinstance(hexdigest, str) else b""
        if len(raw) != 32:
            raise ValueError(f"the digest of '{name}'")
        return KeyRecord(
            name,
            raw,
            str(entry.get("created") or ""),
            _positive(entry.get("rpm")),
            _positive(entry.get("tokens_per_day")),
        )
    except KeyError as exc:
        raise BadKeyStore(path, f"a key without {exc.args[0]}") from None
    except ValueError as exc:
        raise BadKeyStore(path, str(exc)) from None


def read_store(path: Path) -> list[KeyRecord]:
    """The named keys in the store (none when it does not exist).

    Raises InsecureSecretFile when others can read it, BadKeyStore when it is not a store.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except PermissionError:
        raise UnreadableKeyStore(path) from None
    if not is_private(path):
        raise InsecureSecretFile(path)
    try:
        data = json.loads(text)
    except ValueError:
        raise BadKeyStore(path, "not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise BadKeyStore(path, "no list of keys")
    records = [_record(path, entry) for entry in data["keys"]]
    names = [r.name for r in records]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise BadKeyStore(path, f"the name '{name}' twice")
    return records


def _owner(path: Path, fallback: Path | None) -> tuple[int, int] | None:
    """Who a rewritten store must belong to: root (sudo stackctl keys …, system scope) keeps
    the owner of the file it replaces, else of the unnamed key file, so the proxy, which runs
    as the services' account, can still read it. Anyone else writes files they own."""
    if os.geteuid() != 0:
        return None
    for candidate in (path, fallback):
        if candidate is not None and candidate.exists():
            info = candidate.stat()
            return info.st_uid, info.st_gid
    return None


def write_store(path: Path, records: Iterable[KeyRecord], owner_of: Path | None = None) -> None:
    """Write the store atomically, mode 0600 (owner: see _owner)."""
    data = {"version": STORE_VERSION, "keys": [r.to_json() for r in records]}
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, text, SECRET_MODE, owner=_owner(path, owner_of))


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def add_key(
    path: Path,
    name: str,
    *,
    rpm: int | None = None,
    tokens_per_day: int | None = None,
    replace: bool = False,
    owner_of: Path | None = None,
) -> tuple[str, KeyRecord]:
    """Make a key named `name` and store its digest. Returns (the key, its record): the key
    itself is never written anywhere. `replace`: a key of that name is replaced (rotated)."""
    if not NAME_PATTERN.match(name) or UNNAMED_PATTERN.match(name):
        raise InvalidKeyName(name)
    records = read_store(path)
    if any(r.name == name for r in records):
        if not replace:
            raise KeyNameTaken(name)
        records = [r for r in records if r.name != name]
    key = new_key()
    record = KeyRecord(name, digest(key), _now_iso(), rpm, tokens_per_day)
    write_store(path, [*records, record], owner_of)
    return key, record


def revoke_key(path: Path, name: str, owner_of: Path | None = None) -> KeyRecord:
    """Remove the named key from the store; UnknownKey when there is none of that name."""
    records = read_store(path)
    kept = [r for r in records if r.name != name]
    if len(kept) == len(records):
        raise UnknownKey(name)
    write_store(path, kept, owner_of)
    return next(r for r in records if r.name == name)


def unnamed_keys(proxy: ProxySection) -> list[KeyRecord]:
    """proxy.api_keys, then the lines of proxy.api_keys_file, as `key-1`, `key-2`, …"""
    inline = len(proxy.api_keys)
    source = str(Path(proxy.api_keys_file).expanduser()) if proxy.api_keys_file else ""
    return [
        KeyRecord(f"key-{i}", digest(key), source="proxy.api_keys" if i <= inline else source)
        for i, key in enumerate(proxy_api_keys(proxy), 1)
    ]


def accepted_keys(proxy: ProxySection) -> list[KeyRecord]:
    """Every key the proxy accepts: the unnamed ones, then the store's."""
    records = unnamed_keys(proxy)
    if proxy.api_keys_file:
        records += read_store(store_path(proxy.api_keys_file))
    return records


def watched_files(proxy: ProxySection) -> list[Path]:
    """The files a running proxy reloads its keys from when they change."""
    if not proxy.api_keys_file:
        return []
    return [Path(proxy.api_keys_file).expanduser(), store_path(proxy.api_keys_file)]


# -- usage ------------------------------------------------------------------------------------


def read_usage(path: Path) -> dict[str, Usage]:
    """What each key used, by name; empty when the proxy has written nothing (yet) or the
    file cannot be read (usage is a record, never a reason to fail)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = data["keys"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    usage: dict[str, Usage] = {}
    for name, entry in keys.items() if isinstance(keys, dict) else ():
        try:
            last = entry.get("last_used")
            usage[name] = Usage(
                float(last) if last is not None else None,
                int(entry.get("day", 0)),
                int(entry.get("tokens", 0)),
            )
        except (AttributeError, TypeError, ValueError):
            continue
    return usage


def write_usage(path: Path, usage: Mapping[str, Usage]) -> None:
    """Write the usage file atomically (mode 0600)."""
    keys = {
        name: {"last_used": u.last_used, "day": u.day, "tokens": u.tokens}
        for name, u in sorted(usage.items())
    }
    atomic_write(path, json.dumps({"version": 1, "keys": keys}) + "\n", SECRET_MODE)


# -- what `keys list` shows -------------------------------------------------------------------


@dataclass(frozen=True)
class KeyListing:
    """One key as `stackctl keys list` shows it (never the key itself)."""

    name: str
    created: str | None  # None: an unnamed key (no record of when it was made)
    last_used: str | None  # None: never, as far as the proxy wrote
    rpm: int | None
    tokens_per_day: int | None
    tokens_today: int
    source: str  # "store", "proxy.api_keys" or the path of proxy.api_keys_file


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def listing(proxy: ProxySection, usage: Mapping[str, Usage], now: float) -> list[KeyListing]:
    """Every key the proxy accepts, with what the usage file says it used."""
    today = utc_day(now)
    rows = []
    for record in accepted_keys(proxy):
        used = usage.get(record.name, Usage())
        rows.append(
            KeyListing(
                record.name,
                record.created or None,
                _iso(used.last_used) if used.last_used is not None else None,
                record.rpm,
                record.tokens_per_day,
                used.tokens_on(today),
                record.source or "store",
            )
        )
    return rows
