"""The keys the proxy accepts, each with its limits, counters and usage.

The gate looks a presented key up by its SHA-256 digest in a dict (stackctl.keystore), so the
cost does not grow with the number of keys. Reloaded without a restart: at most every
CHECK_SECONDS a request stats the key files (inode, size, mtime, ctime) and, when one
changed, reads them again, so a key added or revoked with `stackctl keys` is taken or refused
within a second; SIGHUP reloads them at once. A file that cannot be read then (a half-done edit, a mode others can read)
leaves the keys as they were, and the log says why.

Per key: optional limits, requests in the last 60 s (a sliding window) and tokens a UTC day
(prompt + completion, as the backend counted them, added when an answer ends, so the request
that crosses the limit is answered and the next is refused); counters for /metrics; and the
last-used time, which a background task writes with the day's tokens to the usage file every
USAGE_FLUSH_SECONDS when something changed, never once per request. The minute window lives
in memory only (a restart forgets it); the day's tokens survive a restart through that file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from stackctl import keystore
from stackctl.errors import StackctlError
from stackctl.keystore import DAY, KeyRecord, Usage, digest, read_usage, utc_day, write_usage

if TYPE_CHECKING:
    from stackctl.config.model import ProxySection

log = logging.getLogger("stackctl.proxy")

CHECK_SECONDS = 0.25  # how stale the keys may be: a stat of two files, at most this often
USAGE_FLUSH_SECONDS = 5.0
WINDOW = 60.0  # seconds of the requests-a-minute limit

# The key of the request being answered, set by the gate, read where tokens are counted.
CURRENT: ContextVar[KeyState | None] = ContextVar("stackctl_proxy_key", default=None)


class Refusal(NamedTuple):
    """A request past one of its key's limits."""

    kind: str  # "requests" or "tokens", as OpenAI's 429 names the limit in `type`
    retry_after: int  # seconds
    message: str


class KeyState:
    """One key as the running proxy knows it."""

    __slots__ = ("limited", "rate_limited", "recent", "record", "requests", "tokens", "usage")

    def __init__(self, record: KeyRecord, usage: Usage | None = None):
        self.record = record
        self.usage = usage or Usage()
        self.recent: collections.deque[float] = collections.deque()
        self.requests = 0
        self.tokens = [0, 0]  # in (prompt), out (completion)
        self.rate_limited = {"requests": 0, "tokens": 0}
        self.limited = bool(record.rpm or record.tokens_per_day)

    def admit(self, now: float, wall: float) -> Refusal | None:
        """Count a request, or refuse it when the key is past a limit (refusals count not)."""
        if self.limited:
            refusal = self._refusal(now, wall)
            if refusal is not None:
                self.rate_limited[refusal.kind] += 1
                return refusal
        self.requests += 1
        self.usage.last_used = wall
        return None

    def _refusal(self, now: float, wall: float) -> Refusal | None:
        record = self.record
        if record.tokens_per_day:
            used = self.usage.tokens_on(utc_day(wall))
            if used >= record.tokens_per_day:
                retry = max(1, math.ceil((utc_day(wall) + 1) * DAY - wall))
                return Refusal(
                    "tokens",
                    retry,
                    f"Rate limit reached for key '{record.name}' on tokens per day (TPD): "
                    f"Limit {record.tokens_per_day}, Used {used}. The limit resets at "
                    f"midnight UTC: please try again in {retry}s.",
                )
        if record.rpm:
            recent = self.recent
            while recent and recent[0] <= now - WINDOW:
                recent.popleft()
            if len(recent) >= record.rpm:
                retry = max(1, math.ceil(recent[0] + WINDOW - now))
                return Refusal(
                    "requests",
                    retry,
                    f"Rate limit reached for key '{record.name}' on requests per min (RPM): "
                    f"Limit {record.rpm}, Used {len(recent)}, Requested 1. "
                    f"Please try again in {retry}s.",
                )
            recent.append(now)
        return None

    def add_tokens(self, prompt: int, completion: int, wall: float) -> None:
        self.tokens[0] += prompt
        self.tokens[1] += completion
        usage, day = self.usage, utc_day(wall)
        if usage.day != day:
            usage.day, usage.tokens = day, 0
        usage.tokens += prompt + completion


def count_tokens(prompt: int, completion: int) -> None:
    """Add an answer's tokens to the key that asked for it (none: an open proxy)."""
    key = CURRENT.get()
    if key is not None:
        key.add_tokens(prompt, completion, time.time())


def _signature(path: Path) -> tuple[int, ...] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class Keyring:
    """The proxy's keys by digest; `required` False means any bearer, or none, is accepted
    (no key configured at all: a loopback-only proxy)."""

    def __init__(
        self,
        load: Callable[[], list[KeyRecord]],
        watched: Sequence[Path] = (),
        usage_file: Path | None = None,
        *,
        required: bool = True,
    ):
        self.load = load
        self.watched = list(watched)
        self.usage_file = usage_file
        self.required = required
        self.stored = read_usage(usage_file) if usage_file else {}
        self.by_digest: dict[bytes, KeyState] = {}
        self.by_name: dict[str, KeyState] = {}  # every key seen since start: /metrics keeps it
        self.signatures = [_signature(p) for p in self.watched]
        self.checked = time.monotonic()
        self.flushed: dict[str, tuple[float | None, int, int]] = {}
        self._install(load())

    @classmethod
    def fixed(cls, keys: Sequence[str]) -> Keyring:
        """Unnamed keys that never change (`key-1`, …); none: an open proxy."""
        records = [KeyRecord(f"key-{i}", digest(k), source="-") for i, k in enumerate(keys, 1)]
        return cls(lambda: records, required=bool(keys))

    @classmethod
    def for_config(cls, proxy: ProxySection, usage_file: Path | None) -> Keyring:
        """stack.yaml's keys: proxy.api_keys, the lines of proxy.api_keys_file and the named
        keys stored next to it, reloaded when those files change. Keys are required as soon
        as any is configured: revoking the last one closes the door, never opens it."""
        return cls(
            lambda: keystore.accepted_keys(proxy),
            keystore.watched_files(proxy),
            usage_file,
            required=bool(proxy.api_keys or proxy.api_keys_file),
        )

    @property
    def count(self) -> int:
        return len(self.by_digest)

    def _install(self, records: list[KeyRecord]) -> None:
        by_digest = {}
        for record in records:
            state = self.by_name.get(record.name)
            if state is None or state.record != record:
                usage = state.usage if state else self.stored.get(record.name)
                fresh = KeyState(record, usage)
                if state is not None:  # same name, new digest or limits: counters go on
                    fresh.requests, fresh.tokens = state.requests, state.tokens
                    fresh.rate_limited, fresh.recent = state.rate_limited, state.recent
                state = self.by_name[record.name] = fresh
            by_digest[record.digest] = state
        self.by_digest = by_digest

    def reload(self) -> None:
        """Read the key files again; on failure keep the keys as they were."""
        self.signatures = [_signature(p) for p in self.watched]
        try:
            records = self.load()
        except (StackctlError, OSError) as exc:
            message = exc.message if isinstance(exc, StackctlError) else str(exc)
            log.error("the proxy's keys were not reloaded, the previous ones stay: %s", message)
            return
        self._install(records)
        log.info("the proxy's keys were reloaded: %d key(s)", len(records))

    def reload_on_hangup(self) -> None:
        """SIGHUP reloads the keys at once, as servers are reloaded (`kill -HUP`), instead of
        ending the process (its default action). Only a main thread's loop takes signals: a
        proxy served from another thread watches its files only."""
        # RuntimeError/ValueError: not the main thread; NotImplementedError: Windows
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    def refresh(self, now: float) -> None:
        """Reload when a watched file changed (checked at most every CHECK_SECONDS)."""
        if now - self.checked < CHECK_SECONDS:
            return
        self.checked = now
        if [_signature(p) for p in self.watched] != self.signatures:
            self.reload()

    def find(self, presented: bytes, now: float) -> KeyState | None:
        """The key with this value, or None.

        Looked up by the SHA-256 of the presented value: the digest hides the key's content
        and length from timing, and a 256-bit key cannot be guessed digest by digest, so a
        dict lookup is safe; the final match is still compared with hmac.compare_digest.
        """
        if self.watched:
            self.refresh(now)
        presented_digest = digest(presented)
        state = self.by_digest.get(presented_digest)
        if state is None or not hmac.compare_digest(state.record.digest, presented_digest):
            return None
        return state

    # -- usage --------------------------------------------------------------------------------

    def usage(self) -> dict[str, Usage]:
        """What each key used, as the usage file keeps it (earlier names included)."""
        return {**self.stored, **{name: s.usage for name, s in self.by_name.items()}}

    def flush(self) -> None:
        """Write the usage file when something changed since the last write."""
        if self.usage_file is None:
            return
        usage = self.usage()
        snapshot = {n: (u.last_used, u.day, u.tokens) for n, u in usage.items()}
        if snapshot == self.flushed:
            return
        try:
            write_usage(self.usage_file, usage)
        except OSError as exc:
            log.error("could not write the keys' usage to %s: %s", self.usage_file, exc)
            return
        self.flushed = snapshot

    async def keep_usage(self) -> None:
        """Flush the usage every USAGE_FLUSH_SECONDS (in a thread: it fsyncs), until cancelled."""
        while True:
            await asyncio.sleep(USAGE_FLUSH_SECONDS)
            await asyncio.to_thread(self.flush)

    # -- metrics ------------------------------------------------------------------------------

    def render(self, labels: Callable[..., str]) -> str:
        """Per-key counters in Prometheus' text format (names only: never a key)."""
        states = sorted(self.by_name.items())
        out = [
            "# HELP stackctl_proxy_key_requests_total Requests admitted, by key name.",
            "# TYPE stackctl_proxy_key_requests_total counter",
            *(
                f"stackctl_proxy_key_requests_total{labels(key=name)} {s.requests}"
                for name, s in states
            ),
            "# HELP stackctl_proxy_key_tokens_total Tokens in (prompt) and out (completion), "
            "by key name.",
            "# TYPE stackctl_proxy_key_tokens_total counter",
        ]
        for name, s in states:
            for direction, n in zip(("in", "out"), s.tokens, strict=True):
                out.append(
                    f"stackctl_proxy_key_tokens_total{labels(key=name, direction=direction)} {n}"
                )
        out += [
            "# HELP stackctl_proxy_key_rate_limited_total Requests refused with 429, by key "
            "name and the limit (requests a minute, tokens a day).",
            "# TYPE stackctl_proxy_key_rate_limited_total counter",
        ]
        for name, s in states:
            for kind, n in s.rate_limited.items():
                out.append(
                    f"stackctl_proxy_key_rate_limited_total{labels(key=name, limit=kind)} {n}"
                )
        return "\n".join(out) + "\n"
