"""A small schema walker over YAML nodes, so every problem carries its line.

PyYAML's composed node tree keeps where each key and value starts; walking it (rather than
the loaded dict) lets an error say `stack.yaml:12: unknown key 'prot' in proxy; did you mean
'port'?` instead of a bare "invalid config".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_ENV_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL)", re.I)


@dataclass
class Problems:
    """Problems found while walking one file, each `file:line: message`."""

    source: str
    items: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # key path -> line, for later checks

    def add(self, line: int | None, message: str) -> None:
        where = f"{self.source}:{line}" if line else self.source
        self.items.append(f"{where}: {message}")


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def describe(node: yaml.Node) -> str:
    """How a value reads to a person, for "expected X, got Y" messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    if tag == "null":
        return "nothing (null)"
    if tag == "str":
        return f"the text {node.value!r}"
    return f"{tag} {node.value}"


def suggestion(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(choices)})"


class Spec:
    """Checks one node and returns its Python value, or None after reporting a problem.

    Containers keep their valid parts, so one bad value does not hide the problems that
    only show once the whole config is read (two services on one port, say).
    """

    expected = "a value"

    def check(self, node: yaml.Node, path: str, out: Problems, scalar: Callable) -> Any:
        raise NotImplementedError

    def wrong(self, node: yaml.Node, path: str, out: Problems, expected: str | None = None) -> None:
        out.add(
            line_of(node), f"{path}: expected {expected or self.expected}, got {describe(node)}"
        )


def _scalar_tag(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return node.tag.rsplit(":", 1)[-1]
    return None


class Bool(Spec):
    expected = "true or false"

    def check(self, node, path, out, scalar):
        if _scalar_tag(node) == "bool":
            return scalar(node)
        self.wrong(node, path, out)
        return None


class Int(Spec):
    def __init__(self, low: int, high: int, what: str = "a whole number"):
        self.low, self.high = low, high
        self.expected = f"{what} from {low} to {high}"

    def check(self, node, path, out, scalar):
        value = scalar(node) if _scalar_tag(node) == "int" else None
        if isinstance(value, int) and self.low <= value <= self.high:
            return value
        self.wrong(node, path, out)
        return None


class Port(Int):
    def __init__(self):
        super().__init__(1, 65535, "a port number")


class Number(Spec):
    def __init__(self, low: float):
        self.low = low
        self.expected = f"a number of at least {low:g}"

    def check(self, node, path, out, scalar):
        value = scalar(node) if _scalar_tag(node) in ("int", "float") else None
        if value is not None and value >= self.low:
            return float(value)
        self.wrong(node, path, out)
        return None


class Str(Spec):
    def __init__(self, pattern: str | None = None, what: str = "text", allow_empty: bool = True):
        self.pattern = re.compile(pattern) if pattern else None
        self.expected = what
        self.allow_empty = allow_empty

    def check(self, node, path, out, scalar):
        if _scalar_tag(node) != "str":
            self.wrong(node, path, out)
            return None
        value = scalar(node)
        if (not value and not self.allow_empty) or (
            value and self.pattern and not self.pattern.match(value)
        ):
            self.wrong(node, path, out)
            return None
        return value


class Enum(Spec):
    def __init__(self, *choices: str):
        self.choices = list(choices)
        self.expected = "one of " + ", ".join(choices)

    def check(self, node, path, out, scalar):
        value = scalar(node) if _scalar_tag(node) == "str" else None
        if value in self.choices:
            return value
        hint = suggestion(str(value), self.choices) if value is not None else ""
        out.add(
            line_of(node),
            f"{path}: expected {self.expected}, got {describe(node)}"
            + (hint if hint.startswith(";") else ""),
        )
        return None


class Any_(Spec):
    """Any YAML value (used for request parameter defaults)."""

    def check(self, node, path, out, scalar):
        return scalar(node)


class ListOf(Spec):
    def __init__(self, item: Spec):
        self.item = item
        self.expected = f"a list of {item.expected}"

    def check(self, node, path, out, scalar):
        if not isinstance(node, yaml.SequenceNode):
            self.wrong(node, path, out)
            return None
        values = [
            self.item.check(child, f"{path}[{i}]", out, scalar)
            for i, child in enumerate(node.value)
        ]
        return [v for v in values if v is not None]


class MapOf(Spec):
    """A mapping with free keys (checked by `key`) and values checked by `value`."""

    def __init__(self, value: Spec, key: re.Pattern | None = None, key_what: str = "a name"):
        self.value = value
        self.key = key
        self.key_what = key_what
        self.expected = f"a mapping of {key_what} to {value.expected}"

    def check(self, node, path, out, scalar):
        if not isinstance(node, yaml.MappingNode):
            self.wrong(node, path, out)
            return None
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(scalar(key_node))
            if self.key and not self.key.match(key):
                out.add(line_of(key_node), f"{path}: '{key}' is not {self.key_what}")
                continue
            if key in result:
                out.add(line_of(key_node), f"{path}: '{key}' is given twice")
            out.lines[f"{path}.{key}"] = line_of(key_node)
            value = self.value.check(value_node, f"{path}.{key}", out, scalar)
            if value is not None:
                result[key] = value
        return result


class EnvMap(MapOf):
    """Environment for a unit: NAME: scalar. Secrets are refused (unit files are readable)."""

    def __init__(self, secrets_hint: str):
        super().__init__(EnvValue(), ENV_NAME, "an environment variable name")
        self.secrets_hint = secrets_hint
        self.expected = "a mapping of environment variable names to values"

    def check(self, node, path, out, scalar):
        result = super().check(node, path, out, scalar)
        if not result:
            return result
        for key_node, _ in node.value:
            key = str(scalar(key_node))
            if SECRET_ENV_NAME.search(key):
                out.add(
                    line_of(key_node),
                    f"{path}.{key} looks like a secret, and unit files are readable by every "
                    f"user: move it to {self.secrets_hint} (mode 0600)",
                )
                return None
        return result


class EnvValue(Spec):
    expected = "text, a number or true/false"

    def check(self, node, path, out, scalar):
        tag = _scalar_tag(node)
        if tag in ("str", "int", "float"):
            return str(scalar(node))
        if tag == "bool":
            return "true" if scalar(node) else "false"
        self.wrong(node, path, out)
        return None


class Section(Spec):
    """A mapping with known keys. `required` keys must be present."""

    def __init__(self, fields: dict[str, Spec], required: tuple[str, ...] = ()):
        self.fields = fields
        self.required = required
        self.expected = f"a mapping with keys {', '.join(fields)}"

    def check(self, node, path, out, scalar):
        if not isinstance(node, yaml.MappingNode):
            self.wrong(node, path or "the config", out, "a mapping of keys")
            return None
        result: dict[str, Any] = {}
        seen: set[str] = set()
        ok = True  # False: a required key is missing, so the section cannot be used at all
        where = f"in {path}" if path else "at the top level"
        for key_node, value_node in node.value:
            key = str(scalar(key_node))
            keypath = f"{path}.{key}" if path else key
            if key not in self.fields:
                out.add(
                    line_of(key_node),
                    f"unknown key '{key}' {where}{suggestion(key, list(self.fields))}",
                )
                continue
            if key in seen:
                out.add(line_of(key_node), f"'{keypath}' is given twice")
            seen.add(key)
            out.lines[keypath] = line_of(key_node)
            value = self.fields[key].check(value_node, keypath, out, scalar)
            if value is not None:
                result[key] = value
        for key in self.required:
            if key not in seen:
                out.add(line_of(node), f"{path or 'the config'}: '{key}' is required")
                ok = False
        return result if ok else None
