"""`stackctl doctor`: the probe's facts turned into findings, each with the fix to run.

A finding is ok, warn (works, but worse than it could) or error (`stackctl up` will fail or
the stack will not run). Each check is a small function of the context that yields findings:
`host` (config, OS, service manager), `software` (backend, driver, installs) and `resources`
(ports, other Ollamas, memory, disk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stackctl.config.model import Config
from stackctl.doctor.agents import check_agent_context
from stackctl.doctor.base import Context, Finding, Severity
from stackctl.doctor.cluster import check_cluster
from stackctl.doctor.host import check_config, check_host, check_services
from stackctl.doctor.keys import check_keys
from stackctl.doctor.resources import check_conflicts, check_disk, check_models, check_ports
from stackctl.doctor.software import check_backend, check_front, check_gated, check_installs
from stackctl.probe import HostFacts, probe
from stackctl.stack import resolve_stack

__all__ = ["Context", "Finding", "Report", "Severity", "diagnose", "run"]


@dataclass
class Report:
    facts: HostFacts
    findings: list[Finding]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warn" for f in self.findings)


def diagnose(ctx: Context) -> list[Finding]:
    """Every finding, in the order a person would fix them."""
    return [finding for check in CHECKS for finding in check(ctx)]


CHECKS: list[Callable[[Context], Iterator[Finding]]] = [
    check_config,
    check_host,
    check_backend,
    check_installs,
    check_front,
    check_keys,
    check_conflicts,
    check_ports,
    check_models,
    check_agent_context,
    check_disk,
    check_services,
    check_gated,
    check_cluster,
]


def run(config: Config, config_path: Path, config_problems: list[str]) -> Report:
    """Probe this host for the config and diagnose it."""
    stack = resolve_stack(config, config_path)
    facts = probe(config, stack.paths, stack.backend)
    return Report(facts, diagnose(Context(stack, config_problems, facts)))
