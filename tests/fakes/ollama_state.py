"""The fake Ollama's state dir, its request log, and how it reads OLLAMA_HOST and Host."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .ollama_catalog import canonical, model_entry

DEFAULT_VERSION = "0.32.3"


def now_rfc3339(offset_seconds: float = 0) -> str:
    return (datetime.now().astimezone() + timedelta(seconds=offset_seconds)).isoformat()


def parse_ollama_host(value: str | None) -> tuple[str, int]:
    """OLLAMA_HOST read like envconfig.Host(): `0.0.0.0`, `:8080`, `h:p`, `[::1]:p`, `http://h`."""
    value = (value or "").strip().strip("'\"")
    default_port = 11434
    scheme, sep, rest = value.partition("://")
    hostport = rest if sep else value
    if sep and scheme == "http":
        default_port = 80
    elif sep and scheme == "https":
        default_port = 443
    hostport = hostport.split("/", 1)[0]
    match = re.fullmatch(r"\[([^\]]*)\]:(\d+)|([^:\[\]]*):(\d+)", hostport)
    if match:
        host = match.group(1) if match.group(1) is not None else match.group(3)
        port = int(match.group(2) or match.group(4))
        return host, port if port <= 65535 else default_port
    return (hostport.strip("[]") or "127.0.0.1"), default_port


def host_allowed(host_header: str) -> bool:
    """Ollama's DNS-rebinding guard on a loopback server (routes.go allowedHostsMiddleware)."""
    match = re.fullmatch(r"\[([^\]]+)\](:\d+)?|([^:]*)(:\d+)?", host_header)
    host = (match.group(1) or match.group(3) or "") if match else host_header
    try:
        addr = ipaddress.ip_address(host)
        return addr.is_loopback or addr.is_private or addr.is_unspecified
    except ValueError:
        pass
    host = host.lower()
    if host in ("", "localhost", socket.gethostname().lower()):
        return True
    return host.endswith((".localhost", ".local", ".internal"))


class State:
    """What the fake keeps in its state dir, plus the in-memory request log."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def _read(self, name: str, default: Any) -> Any:
        try:
            return json.loads((self.dir / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return default

    def _write(self, name: str, data: Any) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.dir / name)

    def behaviour(self) -> dict[str, Any]:
        return self._read("behaviour.json", {})

    def set_behaviour(self, **values: Any) -> None:
        with self.lock:
            self._write("behaviour.json", {**self.behaviour(), **values})

    def version(self) -> str:
        return str(self.behaviour().get("version", DEFAULT_VERSION))

    def models(self) -> list[dict[str, Any]]:
        return self._read("models.json", [])

    def find(self, name: str) -> dict[str, Any] | None:
        """An installed model by name; lookups are case-insensitive, `:latest` implied."""
        wanted = canonical(name).lower()
        return next((m for m in self.models() if m["name"].lower() == wanted), None)

    def install(self, name: str) -> dict[str, Any]:
        entry = model_entry(name, now_rfc3339())
        with self.lock:
            models = [m for m in self.models() if m["name"] != entry["name"]]
            self._write("models.json", [*models, entry])
        return entry

    def remove(self, name: str) -> bool:
        found = self.find(name)
        if found:
            with self.lock:
                self._write("models.json", [m for m in self.models() if m["name"] != found["name"]])
        return found is not None

    def bump_pull_attempt(self, name: str) -> int:
        with self.lock:
            attempts = self._read("pulls.json", {})
            attempts[name] = attempts.get(name, 0) + 1
            self._write("pulls.json", attempts)
        return attempts[name]

    def begin(self, method: str, path: str, host: str, body: Any) -> dict[str, Any]:
        entry = {"method": method, "path": path, "host": host, "body": body, "outcome": "running"}
        with self.lock:
            self.log.append(entry)
        return entry

    def finish(self, entry: dict[str, Any], outcome: str) -> None:
        entry["outcome"] = outcome
        with self.lock, open(self.dir / "requests.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def read_requests(state_dir: Path) -> list[dict[str, Any]]:
    """The finished requests a fake (maybe in another process) logged."""
    path = Path(state_dir) / "requests.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]
