"""Waiting for the services a command (re)started: each healthy, or a failure that names the
service, why it stopped, its last log lines and a fix.

`up` waits after its units step, `start` and `restart` after theirs. A service the manager
reports failed, or one that keeps crashing (systemd's Restart=always and launchd's
KeepAlive restart it forever), ends the wait early instead of using up its whole budget; one
that answers and then crashes is caught by a last look at the manager.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from stackctl import health
from stackctl.errors import StackctlError

if TYPE_CHECKING:
    from stackctl.services.base import ServiceManager
    from stackctl.stack import Stack

CRASH_LOOP = 3  # restarts during one wait: the service keeps crashing, waiting will not help
LOG_LINES = 15


def _restarts(manager: ServiceManager, service: str) -> int:
    states = manager.status([service])
    return (states[0].restarts or 0) if states else 0


def gave_up(manager: ServiceManager, service: str) -> Callable[[], str | None]:
    """A callback telling the wait to stop early: the manager gave the service up, or it
    keeps crashing."""
    restarts_before = _restarts(manager, service)

    def reason() -> str | None:
        states = manager.status([service])
        if not states:
            return None
        state = states[0]
        if state.state == "failed":
            return f"its service failed ({state.result or state.sub_state})"
        restarts = (state.restarts or 0) - restarts_before
        if restarts >= CRASH_LOOP:
            return f"it keeps crashing (restarted {restarts} times while waiting)"
        return None

    return reason


def not_healthy_message(manager: ServiceManager, error: health.NotHealthy, fix: str) -> str:
    """What went wrong, the service's last log lines, and what to do."""
    name = error.health.service
    head = f"{health.label(name)} did not become healthy in {error.waited:.0f}s"
    if error.reason:
        head = f"{health.label(name)} stopped: {error.reason}"
    lines = [f"{head} (last answer: {error.health.detail} at {error.health.url})"]
    try:
        log = manager.logs(name, lines=LOG_LINES)
    except StackctlError:
        log = None
    if log:
        lines.append("  its last log lines:")
        lines += [f"    {line}" for line in log.strip().splitlines()[-LOG_LINES:]]
    lines.append(f"  fix: `stackctl logs {name}` shows why; {fix}")
    return "\n".join(lines)


def wait_for(
    stack: Stack,
    names: Sequence[str],
    *,
    fix: str,
    report: Callable[[str], None] = lambda text: None,
    note: Callable[[str], None] = lambda text: None,
) -> None:
    """Wait until each named service is healthy, in start order; raise StackctlError (with
    `fix` as the last advice) when one fails, keeps crashing, or crashed after answering."""
    keys = stack.service_api_keys
    services = [s for s in stack.services if s.name in names]
    results: dict[str, health.Health] = {}
    restarts_when_healthy: dict[str, int] = {}
    for service in services:
        expect = stack.config.vllm.served_model_name if service.name == "vllm" else None
        try:
            results[service.name] = health.wait_healthy(
                service,
                api_key=keys.get(service.name),
                report=report,
                gave_up=gave_up(stack.manager, service.name),
                expect_model=expect,
            )
        except health.NotHealthy as exc:
            raise StackctlError(not_healthy_message(stack.manager, exc, fix)) from None
        restarts_when_healthy[service.name] = _restarts(stack.manager, service.name)
        note(
            f"{health.label(service.name)} is healthy at {service.url} "
            f"({results[service.name].latency_ms:.0f} ms)"
        )
    for state in stack.manager.status([s.name for s in services]):
        crashed = (state.restarts or 0) > restarts_when_healthy.get(state.service, 0)
        if state.state != "active" or crashed:
            why = "it crashed after answering" if crashed else f"its service is {state.state}"
            error = health.NotHealthy(results[state.service], 0.0, why)
            raise StackctlError(not_healthy_message(stack.manager, error, fix))
