"""Pulling models into Ollama with a real progress bar, stall detection and retries.

Ollama's `POST /api/pull` streams one JSON object a line (ollama/ollama `server/images.go`
`PullModel`, `api/types.go` `ProgressResponse`):
`{"status": "pulling <digest12>", "digest", "total", "completed"}` about every 60 ms per layer,
then "verifying sha256 digest", "writing manifest", "success". A failure arrives as HTTP 200
and then an `{"error": ...}` line. Progress is summed per digest over the layers. Pulls stall
in the wild (ollama#8632, #1736): when the bytes stop growing for `stall_seconds` we drop the
stream and ask again, and Ollama resumes from the partial download.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from stackctl.errors import StackctlError
from stackctl.output import StatusLine, duration, human_bytes

# The defaults of `stackctl pull` and `up` live here, and the command modules import them at
# --help time: so asyncio (~25 ms) is imported inside the functions that stream, not above.
DEFAULT_STALL_SECONDS = 60.0
DEFAULT_RETRIES = 5
STALL_ENV = "STACKCTL_PULL_STALL_TIMEOUT"  # seconds without progress before a pull is retried
# Verifying a large blob sends no lines for a while: allow this many stall budgets for it.
QUIET_PHASE_FACTOR = 10


class PullFailed(StackctlError):
    """A pull that cannot finish: the model name, what Ollama said and what to do."""


@dataclass
class PullState:
    """What a pull has done so far: per-layer bytes and the current status line."""

    model: str
    status: str = "starting"
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # digest -> (done, total)
    attempt: int = 1

    @property
    def completed(self) -> int:
        return sum(done for done, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(total for _, total in self.layers.values())

    @property
    def downloading(self) -> bool:
        return self.status.startswith("pulling ") and self.status != "pulling manifest"

    def update(self, event: dict) -> None:
        """Fold one line of the stream into the state."""
        self.status = str(event.get("status", self.status))
        digest = event.get("digest")
        if digest and event.get("total"):
            # `completed` is omitted while it is 0 (omitempty in Ollama's ProgressResponse)
            self.layers[digest] = (int(event.get("completed") or 0), int(event["total"]))


class ProgressBar:
    """Renders a PullState: one line rewritten in place on a terminal, milestones in a log."""

    def __init__(self, terminal: bool | None = None, width: int = 24):
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self._status = StatusLine(self.terminal)
        self.width = width
        self.samples: deque[tuple[float, int]] = deque(maxlen=50)
        self._last_draw = 0.0
        self._last_status = ""
        self._last_tenth = -1

    def rate(self) -> float:
        """Bytes per second over the last few seconds of samples."""
        if len(self.samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def line(self, state: PullState) -> str:
        """The progress line for a state (also used by tests)."""
        if not state.total or not state.downloading:
            return f"{state.model}: {state.status}"
        fraction = min(1.0, state.completed / state.total)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        text = (
            f"{state.model} [{bar}] {fraction * 100:3.0f}% "
            f"{human_bytes(state.completed)} / {human_bytes(state.total)}"
        )
        rate = self.rate()
        if rate > 0:
            text += (
                f"  {human_bytes(rate)}/s  ETA {duration((state.total - state.completed) / rate)}"
            )
        return text

    def sample(self, state: PullState) -> float:
        """Remember how far the pull is (for the rate); returns the time of the sample."""
        now = time.monotonic()
        self.samples.append((now, state.completed))
        while len(self.samples) > 2 and now - self.samples[0][0] > 5:
            self.samples.popleft()
        return now

    def due(self, state: PullState, now: float) -> bool:
        """Whether to show this state: on a terminal at most every 0.1 s and at each new
        status; in a log at each tenth of the download and each new status."""
        status_changed = state.status != self._last_status
        self._last_status = state.status
        if self.terminal:
            if status_changed or now - self._last_draw >= 0.1:
                self._last_draw = now
                return True
            return False
        tenth = int(state.completed * 10 / state.total) if state.total else -1
        if state.downloading and tenth != self._last_tenth:
            self._last_tenth = tenth
            return True
        return status_changed and not state.downloading

    def __call__(self, state: PullState) -> None:
        if not self.due(state, self.sample(state)):
            return
        if self.terminal:
            self._status.show(f"  {self.line(state)}")
        else:
            click.echo(f"  {self.line(state)}")

    def note(self, text: str) -> None:
        """A message between progress lines (a retry, the end of a pull)."""
        self._status.end()
        click.echo(f"  {text}")

    def finish(self) -> None:
        """Keep the last bar on screen and move below it."""
        if self.terminal:
            click.echo("")
        self._status.open = False


async def _next_line(lines, timeout: float) -> str | None:
    """The next line of the stream, or None when nothing came within `timeout`."""
    import asyncio

    try:
        return await asyncio.wait_for(lines.__anext__(), timeout=max(timeout, 0.01))
    except asyncio.TimeoutError:
        return None


async def _pull_once(
    base_url: str, state: PullState, stall_seconds: float, on_update: Callable
) -> bool:
    """One streaming request. True on success, False when it stalled (retry it)."""
    import httpx

    timeout = httpx.Timeout(10.0, read=None)
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        try:
            async with client.stream(
                "POST", f"{base_url}/api/pull", json={"model": state.model, "stream": True}
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode("utf-8", "replace")
                    raise _refused(state.model, response.status_code, body)
                lines = response.aiter_lines()
                try:
                    return await _follow(lines, state, stall_seconds, on_update)
                finally:
                    # an async generator (httpx's typing says AsyncIterator): close it now,
                    # not when it is collected
                    await lines.aclose()  # type: ignore[attr-defined]
        except httpx.TransportError as exc:
            raise PullFailed(
                f"cannot reach Ollama at {base_url} to pull {state.model} ({exc.__class__.__name__}): "
                f"check it runs with `stackctl status`, then `{_pull_command(state.model)}` "
                "resumes the download"
            ) from None


async def _follow(lines, state: PullState, stall_seconds: float, on_update: Callable) -> bool:
    last_progress = time.monotonic()
    best = state.completed
    while True:
        budget = stall_seconds if state.downloading else stall_seconds * QUIET_PHASE_FACTOR
        line = await _next_line(lines, budget - (time.monotonic() - last_progress))
        if line is None:
            return False  # nothing at all for the whole budget
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # not Ollama's format; ignore rather than fail a long download
        if "error" in event:
            raise PullFailed(_error_text(state.model, str(event["error"])))
        previous_status = state.status
        state.update(event)
        on_update(state)
        if state.status == "success":
            return True
        if state.completed > best or state.status != previous_status:
            best = max(best, state.completed)
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > budget:
            return False  # lines keep coming but the bytes do not grow


def _pull_command(model: str) -> str:
    """The command that pulls `model` again, as it can be pasted into a shell."""
    return shlex.join(["stackctl", "pull", model])


def _error_text(model: str, error: str, status: int | None = None) -> str:
    text = f"pulling {model} failed: Ollama says: {error}"
    if "file does not exist" in error or "not found" in error:
        text += f"\n  check the name and tag at https://ollama.com/library/{model.split(':')[0]}"
    elif status is not None and 400 <= status < 500:
        # the request itself was refused (e.g. "invalid model name"): asking again cannot help
        text += (
            "\n  check the name: Ollama's models are named like gemma3:12b "
            "(https://ollama.com/library lists them)"
        )
    else:
        text += f"\n  `{_pull_command(model)}` tries again and resumes what was downloaded"
    return text


def _refused(model: str, status: int, body: str) -> PullFailed:
    try:
        error = str(json.loads(body).get("error", body))
    except (ValueError, AttributeError):
        error = body.strip() or f"HTTP {status}"
    return PullFailed(_error_text(model, f"{error} (HTTP {status})", status))


def pull_model(
    base_url: str,
    model: str,
    *,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    retries: int = DEFAULT_RETRIES,
    on_update: Callable[[PullState], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> PullState:
    """Pull one model, retrying a stalled stream; Ollama resumes partial downloads.

    `retries` counts stalls in a row without any new bytes: a slow but moving download is
    never given up on.
    """
    import asyncio

    state = PullState(model)
    on_update = on_update or (lambda s: None)
    on_note = on_note or (lambda text: None)
    stalls = 0
    while True:
        before = state.completed
        if asyncio.run(_pull_once(base_url, state, stall_seconds, on_update)):
            return state
        stalls = 1 if state.completed > before else stalls + 1
        if stalls > retries:
            raise PullFailed(
                f"pulling {model} stalled: no progress for {stall_seconds:g}s, "
                f"{retries + 1} times in a row\n"
                f"  check the network, then `{_pull_command(model)}` resumes the download"
            )
        state.attempt += 1
        on_note(
            f"{model}: no progress for {stall_seconds:g}s; asking Ollama again "
            f"(it resumes the download), attempt {state.attempt}"
        )


def pull_with_bar(
    base_url: str,
    model: str,
    *,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    retries: int = DEFAULT_RETRIES,
    terminal: bool | None = None,
) -> PullState:
    """Pull one model, drawing its progress bar on stdout."""
    bar = ProgressBar(terminal=terminal)
    try:
        state = pull_model(
            base_url,
            model,
            stall_seconds=stall_seconds,
            retries=retries,
            on_update=bar,
            on_note=bar.note,
        )
    finally:
        bar.finish()
    size = f" ({human_bytes(state.total)})" if state.total else ""
    click.echo(f"  {model}: pulled{size}")
    return state


def installed_models(base_url: str, timeout: float = 5.0) -> list[str] | None:
    """The models Ollama has (`GET /api/tags`), or None when it does not answer."""
    from stackctl.localhttp import Unreachable, get_json

    try:
        status, body = get_json(f"{base_url}/api/tags", timeout=timeout)
    except Unreachable:
        return None
    if status != 200 or not isinstance(body, dict):
        return None
    return [m.get("name", "") for m in body.get("models", [])]


def has_model(names: list[str], model: str) -> bool:
    """True when `model` is among Ollama's names (`gemma3` means `gemma3:latest`)."""
    wanted = model if ":" in model else f"{model}:latest"
    return any(name in (wanted, model) for name in names)
