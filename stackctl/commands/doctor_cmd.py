"""`stackctl doctor [--json]`: what this machine has, and what to fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from stackctl.cli import AppContext, pass_app
from stackctl.errors import ExitCode

if TYPE_CHECKING:
    from stackctl.doctor import Report
    from stackctl.probe import HostFacts

SEVERITY_COLOURS = {"ok": "green", "warn": "yellow", "error": "red"}


@click.command(name="doctor")
@click.option("--json", "json_", is_flag=True, help="Print {facts, findings} as JSON.")
@pass_app
@click.pass_context
def doctor(ctx: click.Context, app: AppContext, json_: bool) -> None:
    """Check this machine and the config: every fact, then findings with the fix to run.

    Exit 0 when nothing is an error, 1 otherwise.

    Example: stackctl doctor --json
    """
    from stackctl import doctor as logic
    from stackctl.config import Config
    from stackctl.errors import ConfigError

    try:
        config, problems = app.config, []
    except ConfigError as exc:  # still check the machine, with the defaults
        config, problems = Config(), exc.problems
    report = logic.run(config, app.config_path, problems)
    if json_:
        from dataclasses import asdict

        from stackctl.output import print_json

        findings = [{**asdict(f), "text": f.text} for f in report.findings]
        print_json({"facts": asdict(report.facts), "findings": findings})
    else:
        click.echo(render(report))
    ctx.exit(ExitCode.ERROR if report.errors else ExitCode.OK)


def render(report: Report) -> str:
    """The facts as a two-column table, then one line per finding, then a tally."""
    from stackctl.output import table

    lines = [table(["fact", "value"], fact_rows(report.facts)), ""]
    for finding in report.findings:
        label = click.style(f"{finding.severity:<5}", fg=SEVERITY_COLOURS[finding.severity])
        lines.append(f"{label}  {finding.check:<11} {finding.text}")
    errors, warnings = report.errors, report.warnings
    lines += ["", f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"]
    return "\n".join(lines)


def fact_rows(facts: HostFacts) -> list[tuple[str, str]]:
    """What doctor shows about the host, in words."""
    from stackctl.output import GIB, gb

    def found(value: str | None, missing: str = "not found") -> str:
        return value if value else missing

    gpus = ", ".join(
        f"{g.name} {gb(g.memory_total_mib / 1024)} GB (driver {g.driver_version})"
        for g in facts.gpus
    )
    if facts.gpus and facts.cuda_version:
        gpus += f", CUDA {facts.cuda_version}"
    ports = ", ".join(
        f"{port} " + ("free" if who is None else f"{who.name or '?'} (pid {who.pid or '?'})")
        for port, who in facts.ports.items()
    )
    memory = f"{gb(facts.ram_total / GIB)} GB total, {gb(facts.ram_available / GIB)} GB available"
    if facts.apple_silicon:
        memory += ", unified (Metal)"
    ollama = (
        f"{facts.ollama_version or 'unknown version'} at {facts.ollama_path}"
        if facts.ollama_path
        else "not installed"
    )
    linger = {True: "on", False: "off", None: "n/a"}[facts.linger]
    return [
        ("os", f"{facts.os_name} {facts.os_version}".strip() + f" ({facts.arch})"),
        ("cpu", facts.cpu_brand or "unknown"),
        ("memory", memory),
        ("nvidia", gpus or facts.nvidia_error or "no NVIDIA GPU"),
        ("disk", f"{gb(facts.disk_free / 1e9)} GB free in {facts.models_dir}"),
        ("services", facts.init_system),
        ("user", f"{facts.user} ({'root' if facts.is_root else 'not root'})"),
        ("linger", linger),
        ("homebrew", found(facts.brew_prefix)),
        ("ollama", ollama),
        ("vllm", found(facts.vllm_version, "not installed")),
        ("open webui", found(facts.openwebui_version, "not installed")),
        ("python 3.11/3.12", found(facts.venv_python)),
        ("uv", found(facts.uv_path)),
        ("ports", ports or "none"),
        ("conflicts", ", ".join(c.name for c in facts.conflicts) or "none"),
    ]
