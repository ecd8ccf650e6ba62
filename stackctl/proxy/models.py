"""Which models the proxy serves, and which backend serves each one.

Every connection's list (Ollama's /api/tags, the others' /v1/models) is fetched together and
cached for `proxy.models_cache_seconds`. Past that, /v1/models waits up to 0.25 s for a
refresh and otherwise answers the stale cache while the refresh runs behind it, so the list
is fresh when the backends are quick and stays quick while one is slow or down (that
backend's models are then missing from the list, and /health says why). A model id is routed after
alias resolution; an id two connections serve goes to the first one listed that is not marked
down. A backend is marked down when its list fails, or when a request finds it takes no
connection: that request goes on to the next connection serving the model (nothing was sent
yet), and so do the following ones until a refresh finds the backend answering again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError, model_not_found
from stackctl.proxy.upstream import Backend, Unreachable, Upstream

T = TypeVar("T")

LIST_TIMEOUT = 3.0  # seconds one backend may take to list its models
RECHECK_UNKNOWN = 1.0  # an unknown model refreshes the lists if they are older than this
FRESH_PATIENCE = 0.25  # how long /v1/models waits for a refresh before answering the stale list


@dataclass
class BackendState:
    """What the last look at one backend found."""

    backend: Backend
    cards: list[dict[str, Any]] = field(default_factory=list)  # last successful list
    reachable: bool | None = None  # None: not checked yet
    error: str | None = None
    latency_ms: float | None = None

    def health(self) -> dict[str, Any]:
        return {
            "name": self.backend.name,
            "mode": self.backend.mode,
            "base_url": self.backend.base_url,
            "reachable": self.reachable,
            "models": len(self.cards) if self.reachable else 0,
            "error": self.error,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class Destination:
    """Where a request goes: the backend, and the model name to send it."""

    backend: Backend
    model: str  # the name to send the backend (the alias target)
    # what metrics call the model: its id in the backend's list, or "other" for a model the
    # backend did not list (a client's string is never a label: it could be anything)
    label: str = "other"


def _created(modified_at: Any) -> int:
    """Unix time from Ollama's RFC 3339 `modified_at` (nanoseconds trimmed for Python)."""
    if not isinstance(modified_at, str):
        return 0
    text = re.sub(r"(\.\d{6})\d+", r"\1", modified_at).replace("Z", "+00:00")
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def _key(backend: Backend, model: str) -> str:
    """How a model id is matched: Ollama's names are case-insensitive, `:latest` implied."""
    if backend.mode != "ollama":
        return model
    model = model.lower()
    return model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"


class ModelRegistry:
    """The merged model list of all connections, plus aliases, and routing by model id."""

    def __init__(
        self,
        backends: list[Backend],
        aliases: dict[str, str],
        upstream: Upstream,
        cache_seconds: float,
        list_timeout: float = LIST_TIMEOUT,
    ):
        self.states = [BackendState(b) for b in backends]
        self.aliases = dict(aliases)
        self.upstream = upstream
        self.cache_seconds = cache_seconds
        self.list_timeout = list_timeout
        self.fetched_at = 0.0
        self._refresh: asyncio.Task | None = None
        self._index: dict[str, dict[str, str]] = {}  # backend name -> key -> model id

    async def close(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)

    async def _fetch(self, state: BackendState) -> None:
        backend = state.backend
        started = time.monotonic()
        path = "/api/tags" if backend.mode == "ollama" else "/models"
        try:
            reply = await self.upstream.call(backend, "GET", path, timeout=self.list_timeout)
            if reply.status != 200:
                raise OpenAIError(502, f"GET {path} answered {reply.status}")
            data = codec.loads(reply.body)
            if backend.mode == "ollama":
                cards = [
                    {
                        "id": m["name"],
                        "object": "model",
                        "created": _created(m.get("modified_at")),
                        "owned_by": backend.name,
                    }
                    for m in data.get("models") or []
                ]
            else:
                cards = [
                    {"object": "model", "created": 0, "owned_by": backend.name, **m}
                    for m in data.get("data") or []
                    if isinstance(m, dict) and isinstance(m.get("id"), str)
                ]
        except OpenAIError as exc:
            state.reachable, state.error = False, exc.message
        except (ValueError, TypeError, KeyError, AttributeError, codec.JSONDecodeError):
            state.reachable, state.error = False, f"GET {path} did not answer a model list"
        else:
            state.cards, state.reachable, state.error = cards, True, None
            self._index[backend.name] = {_key(backend, c["id"]): c["id"] for c in cards}
        state.latency_ms = round((time.monotonic() - started) * 1000, 1)

    async def refresh(self) -> None:
        """Fetch every backend's list now (each one bounded by `list_timeout`)."""
        await asyncio.gather(*(self._fetch(s) for s in self.states))
        self.fetched_at = time.monotonic()

    async def ensure(self, *, wait: bool, patience: float = 0.0) -> None:
        """Start a refresh when the cache is stale; wait for it when asked (or never loaded).

        With `patience`, wait that long for the refresh and answer from the stale cache only
        if it takes longer: local backends list in milliseconds, so a list is fresh whenever
        the backends are quick, and a slow one costs at most `patience`.
        """
        if time.monotonic() - self.fetched_at <= self.cache_seconds and self.fetched_at:
            return
        refresh = self._start_refresh()
        if wait or not self.fetched_at:
            await asyncio.shield(refresh)
        elif patience > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(refresh), patience)

    def _start_refresh(self) -> asyncio.Task:
        """The running refresh, or a new one (never two at once)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self.refresh())
        return self._refresh

    async def cards(self) -> list[dict[str, Any]]:
        """The /v1/models list: each reachable backend's models (first one wins), then aliases."""
        await self.ensure(wait=False, patience=FRESH_PATIENCE)
        listed: dict[str, dict[str, Any]] = {}
        for state in self.states:
            if state.reachable:
                for card in state.cards:
                    listed.setdefault(card["id"], card)
        for alias, target in self.aliases.items():
            if alias in listed:
                continue
            destination = self._find(target)
            if destination is not None and self._state(destination.backend).reachable:
                card = self._card_of(destination)
                listed[alias] = {
                    "id": alias,
                    "object": "model",
                    "created": card.get("created", 0),
                    "owned_by": card.get("owned_by"),
                }
        return list(listed.values())

    async def card(self, model: str) -> dict[str, Any]:
        """One model object, for GET /v1/models/{id}."""
        for card in await self.cards():
            if card["id"] == model:
                return card
        destination = await self.route(model, allow_unlisted=False)
        return {**self._card_of(destination), "id": model}

    async def health(self) -> list[dict[str, Any]]:
        await self.ensure(wait=True)
        return [s.health() for s in self.states]

    def _state(self, backend: Backend) -> BackendState:
        return next(s for s in self.states if s.backend is backend)

    def _card_of(self, destination: Destination) -> dict[str, Any]:
        state = self._state(destination.backend)
        wanted = _key(destination.backend, destination.model)
        return next(
            (c for c in state.cards if _key(destination.backend, c["id"]) == wanted),
            {"id": destination.model},
        )

    def _find(self, target: str, skip: Collection[str] = ()) -> Destination | None:
        """The first connection (not in `skip`) listing the model and not marked down, else the
        first one listing it that is marked down (it may be back)."""
        marked_down = None
        for state in self.states:
            listed = self._index.get(state.backend.name, {}).get(_key(state.backend, target))
            if listed is None or state.backend.name in skip:
                continue
            if state.reachable is not False:
                return Destination(state.backend, target, listed)
            marked_down = marked_down or Destination(state.backend, target, listed)
        return marked_down

    def mark_down(self, backend: Backend, error: str) -> None:
        """A request found the backend taking no connection: route around it until a refresh
        finds it answering (its models leave /v1/models meanwhile, and /health says why)."""
        state = self._state(backend)
        state.reachable, state.error = False, error

    async def failover(self, model: str, attempt: Callable[[Destination], Awaitable[T]]) -> T:
        """`attempt(destination)` for the model's route; when that backend takes no connection,
        mark it down and attempt the next connection serving the model, until one takes it or
        none is left (then the last one's error stands)."""
        destination = await self.route(model)
        tried: list[str] = []
        while True:
            try:
                return await attempt(destination)
            except Unreachable as error:
                self.mark_down(destination.backend, error.message)
                tried.append(destination.backend.name)
                following = self._find(destination.model, skip=tried)
                if following is None:
                    raise
                destination = following

    async def route(self, model: str, *, allow_unlisted: bool = True) -> Destination:
        """The backend for a model id (after aliases), or a 404 naming the model."""
        await self.ensure(wait=False)
        target = self.aliases.get(model, model)
        found = self._find(target)
        if found is None and time.monotonic() - self.fetched_at > RECHECK_UNKNOWN:
            # maybe it was pulled a moment ago: look again (at most once a second)
            await asyncio.shield(self._start_refresh())
            found = self._find(target)
        if found is not None:
            return found
        if allow_unlisted:
            # A backend we cannot list may still serve it: send the request there, so the
            # client hears why that backend fails (502/504) rather than a misleading 404.
            down = next((s for s in self.states if s.reachable is False), None)
            if down is not None:
                return Destination(down.backend, target)
        raise model_not_found(model)
