"""Fuzzing the proxy over a real socket: request bodies built from the schema, then broken.

Hypothesis builds chat, completion and embedding requests the proxy accepts, then breaks one
place in each: a wrong type at any field, unicode with lone surrogates and NUL, numbers past
64 bits, NaN and infinities, nesting thousands deep, long strings, unknown fields; and it
mangles the raw bytes too. Whatever it sends, the proxy must never answer 500, every non-2xx
answer (and every error event in a stream) must have OpenAI's error shape, and the process's
memory must stay bounded.

CI runs a small budget with a fixed seed; `STACKCTL_FUZZ_EXAMPLES=5000` runs a larger one
(bench/README.md).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import httpx
import psutil
import pytest
from fakes.asgi_server import ServerThread
from fakes.ollama_api import FakeOllama
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from stackctl.config.model import ProxySection
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend

EXAMPLES = int(os.environ.get("STACKCTL_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MODELS = ("gemma3:1b", "nomic-embed-text", "no-such-model")


class Deep:
    """Nesting `levels` deep, written out by `encode` (json.dumps would recurse into it)."""

    def __init__(self, levels: int):
        self.levels = levels

    def __repr__(self) -> str:
        return f"Deep({self.levels})"


def encode(body: Any) -> bytes:
    """JSON text for a body that may hold Deep markers, NaN, infinities, huge integers and
    lone surrogates (escaped as \\udXXX, which JSON text may carry and UTF-8 may not)."""
    deep: list[Deep] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Deep):
            deep.append(value)
            return f"@@deep{len(deep) - 1}@@"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(body))
    for i, d in enumerate(deep):
        text = text.replace(f'"@@deep{i}@@"', "[" * d.levels + "]" * d.levels)
    return text.encode()


ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028", "\ufeff", "\U0001f600", '"', "\\"]),
    ),
    max_size=40,
)
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**80),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    st.builds(lambda n: "x" * n, st.integers(10_000, 200_000)),
    # nesting, weighted up: past about 1,000 levels it is what Python's json module cannot take
    st.builds(Deep, st.integers(1, 3000)),
    st.builds(Deep, st.sampled_from([1000, 1100, 2000, 3000])),
    st.builds(Deep, st.sampled_from([1000, 1100, 2000, 3000])),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(ODD_TEXT, st.integers(), max_size=3),
)

MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "developer"]), "content": ODD_TEXT}
)
TOOL = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True)},
            optional={"parameters": st.just({"type": "object", "properties": {}})},
        ),
    }
)
SAMPLING = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "max_tokens": st.integers(1, 64),
    "seed": st.integers(0, 2**31),
    "stop": st.one_of(ODD_TEXT, st.lists(ODD_TEXT, max_size=3)),
    "stream": st.booleans(),
    "user": ODD_TEXT,
}
CHAT = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "messages": st.lists(MESSAGE, min_size=1, max_size=3)},
    optional={
        **SAMPLING,
        "tools": st.lists(TOOL, max_size=2),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]),
        "reasoning_effort": st.sampled_from(["low", "medium", "high"]),
    },
)
COMPLETION = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "prompt": ODD_TEXT}, optional=SAMPLING
)
EMBEDDING = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "input": st.one_of(ODD_TEXT, st.lists(ODD_TEXT, min_size=1, max_size=3)),
    },
    optional={
        "encoding_format": st.sampled_from(["float", "base64"]),
        "dimensions": st.integers(1, 8),
    },
)
ROUTES = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETION, "/v1/embeddings": EMBEDDING}


def paths(value: Any, here: tuple = ()) -> list[tuple]:
    """Every place in a body a value could be replaced (the body itself excluded)."""
    found = [here] if here else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*here, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += paths(item, (*here, i))
    return found


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], tuple(rest), new)}
    copy = list(value)
    copy[head] = replaced(copy[head], tuple(rest), new)
    return copy


@st.composite
def broken_request(draw: st.DrawFn) -> tuple[str, bytes]:
    """A request built from a route's schema, then broken in one place (or left whole)."""
    route = draw(st.sampled_from(sorted(ROUTES)))
    body = draw(ROUTES[route])
    how = draw(st.sampled_from(["replace", "replace", "add", "whole"]))
    if how == "replace":
        body = replaced(body, draw(st.sampled_from(paths(body))), draw(HOSTILE))
    elif how == "add":
        body = {**body, draw(ODD_TEXT): draw(HOSTILE)}
    return route, encode(body)


@st.composite
def mangled_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid body's bytes, cut short or with bytes flipped or inserted."""
    route = draw(st.sampled_from(sorted(ROUTES)))
    raw = bytearray(encode(draw(ROUTES[route])))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        how = draw(st.sampled_from(["cut", "flip", "insert"]))
        if how == "cut":
            del raw[at:]
        elif how == "flip" and at < len(raw):
            raw[at] = draw(st.integers(0, 255))
        else:
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
    return route, bytes(raw)


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "nomic-embed-text")
        yield fake


@pytest.fixture(scope="module")
def client(ollama):
    app = create_app(
        ProxySection(), backends=[Backend("ollama", "ollama", ollama.url)], api_keys=[]
    )
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def assert_error_shape(error: Any) -> None:
    assert isinstance(error, dict) and set(error) == {"error"}, error
    fields = error["error"]
    assert set(fields) == {"message", "type", "param", "code"}, fields
    assert isinstance(fields["message"], str) and isinstance(fields["type"], str)
    assert len(fields["message"]) < 2000, "an error echoed too much of the request"


def check(client: httpx.Client, route: str, raw: bytes) -> None:
    reply = client.post(route, content=raw, headers={"content-type": "application/json"})
    assert reply.status_code != 500, reply.text
    assert reply.status_code in (200, 400, 404, 413), reply.text
    if reply.status_code != 200:
        assert_error_shape(reply.json())
    elif reply.headers["content-type"].startswith("text/event-stream"):
        for block in reply.text.split("\n\n"):
            data = block.removeprefix("data: ")
            if data and data != "[DONE]" and '"error"' in data[:10]:
                assert_error_shape(json.loads(data))
    else:
        assert isinstance(reply.json(), dict)


@seed(20261202)
@FUZZ
@given(request=broken_request())
def test_broken_requests_get_openai_errors_never_a_500(client, request):
    check(client, *request)


@seed(20261202)
@FUZZ
@given(request=mangled_bytes())
def test_mangled_bytes_get_openai_errors_never_a_500(client, request):
    check(client, *request)


def test_memory_stays_bounded_under_hostile_bodies(client):
    """Bodies built to cost memory (31 MiB of `{},` parses to about a gigabyte): at its peak
    the process (client and proxy: the bodies themselves are about 70 MiB) grows by little,
    and it keeps less."""
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    bodies = [
        b'{"model": "gemma3:1b", "messages": [], "tools": [' + b"{}," * 10_000_000 + b"{}]}",
        b'{"model": "gemma3:1b", "messages": [' + b'"a",' * 3_000_000 + b'"a"]}',
        b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "'
        + b"x" * 30_000_000
        + b'"}], "n": 2}',
    ]
    sampler.start()
    for raw in bodies:
        check(client, "/v1/chat/completions", raw)
    done.set()
    sampler.join()
    peaked, kept = (peak - before) / 2**20, (process.memory_info().rss - before) / 2**20
    assert peaked < 300, f"RSS peaked {peaked:.0f} MiB above where it started"
    assert kept < 300, f"RSS kept {kept:.0f} MiB more than where it started"
