"""A service's unit, independent of the service manager (`ServiceSpec`), and the helpers
that fill the unit templates in `templates/systemd/` and `templates/launchd/`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stackctl.errors import StackctlError
from stackctl.paths import templates_dir


@dataclass(frozen=True)
class ServiceSpec:
    """One service, independent of the service manager."""

    service: str
    description: str
    argv: list[str]
    env: dict[str, str]
    secret_names: tuple[str, ...]  # secrets it reads (launchd embeds their values)
    uses_secrets_file: bool  # systemd: EnvironmentFile= the 0600 secrets file
    working_directory: Path
    depends_on: tuple[str, ...]  # services it starts after (and wants)
    writable: tuple[Path, ...]  # system scope: the only places it may write


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, values: Mapping[str, str | Sequence[str]]) -> str:
    """Fill `{name}` placeholders. A placeholder alone on its line takes a list of lines,
    each indented like it (an empty list removes the line); elsewhere it takes text."""
    out: list[str] = []
    for line in template.splitlines():
        alone = _PLACEHOLDER.fullmatch(line.strip())
        if alone and not isinstance(values[alone.group(1)], str):
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + item for item in values[alone.group(1)])
            continue
        out.append(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), line))
    return "\n".join(out) + "\n"


def template(kind: str, name: str) -> str:
    """The text of templates/<kind>/<name>.tmpl."""
    return (templates_dir() / kind / f"{name}.tmpl").read_text(encoding="utf-8")


def no_line_breaks(what: str, value: str) -> str:
    """Unit files are line-based: a line break in a value would inject directives."""
    if "\n" in value or "\r" in value:
        raise StackctlError(f"{what} contains a line break, which cannot go into a unit file")
    return value
