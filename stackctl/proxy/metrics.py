"""Prometheus metrics of the proxy (Ollama has none): plain text, no client library needed.

requests by route, model and status; a latency histogram by route; tokens in and out by
model; streams in flight; backend failures by connection.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from stackctl.proxy import keyring

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**values: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in values.items()) + "}"


class Metrics:
    """Counters kept in memory for one proxy process."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency: dict[str, list[float]] = {}  # route -> bucket counts + [sum, count]
        self.tokens: Counter[tuple[str, str]] = Counter()
        self.backend_errors: Counter[tuple[str, int]] = Counter()
        self.streams_in_flight = 0

    def observe(self, route: str, model: str, status: int, seconds: float) -> None:
        self.requests[(route, model, status)] += 1
        counts = self.latency.get(route)
        if counts is None:
            counts = self.latency[route] = [0.0] * (len(BUCKETS) + 3)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        counts[-2] += seconds
        counts[-1] += 1

    def count_tokens(self, model: str, usage: Any) -> None:
        """Add an answer's `usage` (a backend's: counts of another type are not counted), by
        model and to the key that asked (keyring.count_tokens)."""
        if type(usage) is not dict:
            return
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        # type(x) is int: a bool (an int subclass) is not a count
        prompt = prompt if type(prompt) is int and prompt > 0 else 0
        completion = completion if type(completion) is int and completion > 0 else 0
        if prompt:
            self.tokens[(model, "in")] += prompt
        if completion:
            self.tokens[(model, "out")] += completion
        if prompt or completion:
            keyring.count_tokens(prompt, completion)

    def backend_error(self, connection: str, status: int) -> None:
        self.backend_errors[(connection, status)] += 1

    def render(self) -> str:
        """The text exposition format, version 0.0.4."""
        out = [
            "# HELP stackctl_proxy_requests_total Requests answered, by route, model and status.",
            "# TYPE stackctl_proxy_requests_total counter",
        ]
        for (route, model, status), n in sorted(self.requests.items()):
            out.append(
                f"stackctl_proxy_requests_total{labels(route=route, model=model, status=str(status))} {n}"
            )
        out += [
            "# HELP stackctl_proxy_request_duration_seconds Time from request to the last byte sent.",
            "# TYPE stackctl_proxy_request_duration_seconds histogram",
        ]
        for route, counts in sorted(self.latency.items()):
            running = 0.0
            buckets = zip((*BUCKETS, float("inf")), counts[: len(BUCKETS) + 1], strict=True)
            for bound, in_bucket in buckets:
                running += in_bucket
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(
                    f"stackctl_proxy_request_duration_seconds_bucket{labels(route=route, le=le)} {running:g}"
                )
            out.append(
                f"stackctl_proxy_request_duration_seconds_sum{labels(route=route)} {counts[-2]:.6f}"
            )
            out.append(
                f"stackctl_proxy_request_duration_seconds_count{labels(route=route)} {counts[-1]:g}"
            )
        out += [
            "# HELP stackctl_proxy_tokens_total Tokens in (prompt) and out (completion), by model.",
            "# TYPE stackctl_proxy_tokens_total counter",
        ]
        for (model, direction), n in sorted(self.tokens.items()):
            out.append(f"stackctl_proxy_tokens_total{labels(model=model, direction=direction)} {n}")
        out += [
            "# HELP stackctl_proxy_streams_in_flight Streamed answers being relayed right now.",
            "# TYPE stackctl_proxy_streams_in_flight gauge",
            f"stackctl_proxy_streams_in_flight {self.streams_in_flight}",
            "# HELP stackctl_proxy_backend_errors_total Backend failures, by connection and the status sent.",
            "# TYPE stackctl_proxy_backend_errors_total counter",
        ]
        for (connection, status), n in sorted(self.backend_errors.items()):
            out.append(
                f"stackctl_proxy_backend_errors_total{labels(connection=connection, status=str(status))} {n}"
            )
        return "\n".join(out) + "\n"
