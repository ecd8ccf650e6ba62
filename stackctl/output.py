"""Printing for people and programs: tables, --json, durations, sizes, and a status line
rewritten in place on a terminal. Every formatter stackctl shows lives here, so the same
quantity reads the same everywhere."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

GB = 1e9  # bytes in a gigabyte (SI, as disks and downloads are sold)
GIB = 1024**3  # bytes in a gibibyte (memory sizes)
ERASE_LINE = "\r\x1b[2K"  # carriage return, then erase the whole line (ECMA-48 EL 2)


def print_json(data: Any) -> None:
    """Print data as indented JSON (dataclasses and paths already turned into plain data)."""
    click.echo(json.dumps(data, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table."""
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """A span of time to the second, largest units first: 45s, 3m05s, 2h03m, 1d02h."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def rough_duration(seconds: float) -> str:
    """A span of time as a wait is described: seconds, whole minutes from two minutes on."""
    return f"{seconds / 60:.0f}m" if seconds >= 120 else f"{seconds:.0f}s"


def human_bytes(count: float) -> str:
    """Bytes as people read them (SI units, as disks and downloads are sold): 815.3 MB, 17.4 GB."""
    for unit in ("B", "KB", "MB", "GB", "TB"):  # steps of 1000
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def gb(value: float) -> str:
    """A number of gigabytes for people: whole numbers from 10 up, one decimal below."""
    if value >= 10 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.1f}"


class StatusLine:
    """One line of progress: rewritten in place on a terminal, so a command that prints
    hundreds of lines (pip) or a bar updated ten times a second fits on one line; `end()`
    clears it before anything else is printed."""

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self.open = False

    def show(self, text: str) -> None:
        """Replace the line's text (terminals only)."""
        click.echo(ERASE_LINE + text, nl=False)
        self.open = True

    def end(self) -> None:
        """Clear the line, if one is shown."""
        if self.open:
            click.echo(ERASE_LINE, nl=False)
            self.open = False
