"""Is each service of the stack answering? Quick concurrent checks, and patient waits.

What "healthy" means for each service, and how long `up` waits for it, is in its registry
entry (`stackctl.registry`): Ollama answers `GET /api/tags`; vLLM answers
`GET /health` (empty 200) and then lists its model on `GET /v1/models`; the proxy lists
models on `GET /v1/models`; Open WebUI answers `GET /health` with `{"status": true}`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stackctl import __version__
from stackctl.localhttp import Unreachable, get_json
from stackctl.output import rough_duration
from stackctl.registry import HealthCheck, info, label
from stackctl.stack import Service

__all__ = ["Health", "NotHealthy", "budget_for", "check", "check_all", "label", "wait_healthy"]

REPORT_EVERY = 10.0  # seconds between "still waiting" lines while the answer stays the same


@dataclass
class Health:
    """The answer of one service: ok or the failure, with latency and what it reports."""

    service: str
    url: str
    ok: bool
    detail: str  # "ok", or what went wrong
    latency_ms: float | None = None
    version: str | None = None
    models: list[str] = field(default_factory=list)
    certificate_expires: str | None = None  # https: when the served certificate expires (ISO)


def _get_json(
    url: str,
    headers: dict[str, str],
    timeout: float,
    server_name: str | None = None,
    text: bool = False,
) -> tuple[int, Any]:
    return get_json(url, headers=headers, timeout=timeout, server_name=server_name, text=text)


def _version(url: str, timeout: float) -> str | None:
    try:
        status, body = _get_json(url, {}, timeout)
    except Unreachable:  # the version is a nicety: never let it fail a health check
        return None
    if status == 200 and isinstance(body, dict):
        return str(body.get("version") or "") or None
    return None


def _model_ids(body: Any, shape: str) -> list[str]:
    """The model names in an Ollama `/api/tags` or an OpenAI `/v1/models` answer."""
    if shape == "ollama":
        return [m.get("name", "") for m in (body or {}).get("models", [])]
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return [str(m.get("id")) for m in body["data"] if isinstance(m, dict)]
    return []


def check(service: Service, *, timeout: float = 2.0, api_key: str | None = None) -> Health:
    """Ask one service whether it is healthy (one request, plus its model list and version
    when its registry entry names them). `api_key` is sent as a Bearer token: the proxy's
    key, or vLLM's VLLM_API_KEY."""
    spec: HealthCheck = info(service.name).health
    url = service.url + spec.path
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    started = time.monotonic()
    try:
        status, body = _get_json(url, headers, timeout, service.server_name, spec.text_body)
    except Unreachable as exc:
        return Health(service.name, url, False, exc.reason, (time.monotonic() - started) * 1000)
    health = Health(service.name, url, False, f"HTTP {status}", (time.monotonic() - started) * 1000)
    if service.scheme == "https":
        health.certificate_expires = _certificate_expiry(service, timeout)
    if status != 200:
        return health
    try:
        if spec.expect is not None and body != spec.expect:
            health.detail = f"answered {body!r}, not {json.dumps(spec.expect)}"
            return health
        if spec.models_path is not None:
            if spec.models_path != spec.path:
                status, body = _get_json(service.url + spec.models_path, headers, timeout)
                if status != 200:
                    health.detail = f"{spec.path} ok but {spec.models_path} gave HTTP {status}"
                    return health
            health.models = _model_ids(body, spec.models_shape)
        if spec.version_is_stackctl:
            health.version = __version__
        elif spec.version_path is not None:
            health.version = _version(service.url + spec.version_path, timeout)
    except Unreachable as exc:
        health.detail = exc.reason
        return health
    except (AttributeError, TypeError) as exc:  # an answer of an unexpected shape
        health.detail = f"answered in an unexpected shape ({type(exc).__name__})"
        return health
    health.ok, health.detail = True, "ok"
    return health


def _certificate_expiry(service: Service, timeout: float) -> str | None:
    """When the certificate an https service serves expires, ISO 8601 (None: unreadable)."""
    from stackctl.front import certificate_expiry

    try:
        return certificate_expiry(service.port, service.server_name, timeout).isoformat()
    except (OSError, ValueError, IndexError):
        return None


def check_all(
    services: Sequence[Service],
    *,
    timeout: float = 2.0,
    api_keys: Mapping[str, str] | None = None,
) -> list[Health]:
    """Check every service at once, so one that hangs costs `timeout`, not the sum.
    `api_keys`: the key to send each service, by name (see Stack.service_api_keys)."""
    if not services:
        return []
    api_keys = api_keys or {}
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = [
            pool.submit(check, s, timeout=timeout, api_key=api_keys.get(s.name)) for s in services
        ]
        return [f.result() for f in futures]


def budget_for(service: str) -> float:
    """Seconds `up` waits for a service; STACKCTL_HEALTH_BUDGET (seconds) caps them all."""
    budget = info(service).budget
    cap = os.environ.get("STACKCTL_HEALTH_BUDGET")
    if cap:
        with contextlib.suppress(ValueError):
            budget = min(budget, float(cap))
    return budget


class NotHealthy(Exception):
    """A service did not become healthy in its budget."""

    def __init__(self, health: Health, waited: float, reason: str = ""):
        self.health = health
        self.waited = waited
        self.reason = reason
        super().__init__(f"{label(health.service)} is not healthy: {health.detail}")


def wait_healthy(
    service: Service,
    *,
    api_key: str | None = None,
    report: Callable[[str], None] = lambda text: None,
    gave_up: Callable[[], str | None] = lambda: None,
    budget: float | None = None,
    expect_model: str | None = None,
) -> Health:
    """Poll one service with backoff until it is healthy, reporting what it waits for.

    `gave_up` may return a reason to stop early (the service manager says it failed for
    good). With `expect_model`, vLLM also has to list that model. Raises NotHealthy.
    """
    budget = budget_for(service.name) if budget is None else budget
    started = time.monotonic()
    delay = 0.1
    why = info(service.name).why_slow
    last_report: tuple[str, float] = ("", -REPORT_EVERY)
    while True:
        health = check(service, timeout=min(5.0, max(1.0, budget / 10)), api_key=api_key)
        if health.ok and (expect_model is None or expect_model in health.models):
            return health
        if health.ok:
            health = Health(
                service.name, health.url, False, f"does not list {expect_model} yet", None
            )
        waited = time.monotonic() - started
        if waited >= budget:
            raise NotHealthy(health, waited)
        reason = gave_up()
        if reason:
            raise NotHealthy(health, waited, reason)
        if health.detail != last_report[0] or waited - last_report[1] >= REPORT_EVERY:
            # a new answer, or a sign of life every few seconds: not a line per poll
            last_report = (health.detail, waited)
            note = f"waiting for {label(service.name)} at {health.url}: {health.detail}"
            note += f" ({rough_duration(waited)} of up to {rough_duration(budget)}"
            report(note + (f"; {why})" if why else ")"))
        time.sleep(min(delay, max(0.0, budget - waited)))
        delay = min(delay * 1.5, 3.0)
