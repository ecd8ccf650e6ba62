"""Backends that fail on purpose: silent, slow to answer, answering garbage, killed mid-answer.

Whatever the backend does, the client gets an OpenAI-shaped error naming the connection, or
a stream that ends with an SSE error event (never a 500, a traceback or a cut connection),
and a client that hangs up has its backend request closed at once.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fakes.asgi_server import ServerThread
from fakes.misbehaving import MODEL, MisbehavingBackend, ndjson

from stackctl.config.model import ProxySection
from stackctl.proxy.app import create_app
from stackctl.proxy.server import uvicorn_options
from stackctl.proxy.upstream import Backend

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
STREAM = {**CHAT, "stream": True}


@pytest.fixture(scope="module")
def ollama():
    with MisbehavingBackend("ollama") as backend:
        yield backend


@pytest.fixture(scope="module")
def compatible():
    with MisbehavingBackend("openai_compatible") as backend:
        yield backend


def serve(backend: MisbehavingBackend, *, plain: bool = False, **settings) -> ServerThread:
    """The proxy under its own HTTP protocol, as `stackctl proxy serve` runs it (the event
    loop aside); `plain`: under uvicorn's own, as any ASGI server would run the app."""
    name = "local" if backend.mode == "ollama" else "remote"
    proxy_settings = ProxySection(**{"read_timeout": 30.0, **settings})
    app = create_app(
        proxy_settings,
        backends=[Backend(name, backend.mode, backend.url)],
        api_keys=[],
    )
    protocol = {} if plain else {"http": uvicorn_options(proxy_settings)["http"]}
    return ServerThread(app, **protocol).start()


@pytest.fixture(scope="module")
def proxy(ollama):
    server = serve(ollama, read_timeout=2.0, max_answer_mb=1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def patient(ollama):
    """A proxy that waits 30 s for the backend: only a client's hang-up ends a request early."""
    server = serve(ollama)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def patient_plain(ollama):
    """The patient proxy under uvicorn's own protocol, which does not call back on a hang-up."""
    server = serve(ollama, plain=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def passthrough(compatible):
    server = serve(compatible, read_timeout=2.0, max_answer_mb=1)
    yield server
    server.stop()


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def events(text: str) -> list:
    """The data of each SSE event; JSON decoded, except [DONE]."""
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream(server: ServerThread, body: dict) -> list:
    """A whole streamed answer; raises if the proxy cut the connection mid-stream."""
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        return events(r.read().decode())


# -- a silent backend --------------------------------------------------------------------


def test_a_silent_backend_is_a_504_after_read_timeout(proxy, ollama):
    ollama.behave("silent")
    started = time.monotonic()
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 504
    assert 1.9 < time.monotonic() - started < 10
    assert error_of(reply) == {
        "message": f"The backend 'local' ({ollama.url}) sent nothing for 2 s (proxy.read_timeout).",
        "type": "api_error",
        "param": None,
        "code": "backend_timeout",
    }


@pytest.mark.parametrize("server", ["patient", "patient_plain"])
@pytest.mark.parametrize("body", [CHAT, STREAM], ids=["whole", "streamed"])
def test_a_client_that_hangs_up_closes_the_backend_request_at_once(server, ollama, body, request):
    """Before the backend's headers arrive, too: Ollama would otherwise load the model and
    write a whole answer for nobody, until read_timeout (600 s by default). Under the proxy's
    protocol the connection's loss calls back; under another server a task waits on receive."""
    patient = request.getfixturevalue(server)
    ollama.behave("silent")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(patient.url + "/v1/chat/completions", json=body, timeout=1.0)
    gave_up = time.monotonic()
    deadline = gave_up + 5
    while not (ollama.posts() and ollama.posts()[0].closed_at) and time.monotonic() < deadline:
        time.sleep(0.02)
    [request] = ollama.posts()
    assert request.closed_at is not None, "the backend request was still open 5 s later"
    assert request.closed_at - gave_up < 1.0


# -- a slow backend ----------------------------------------------------------------------


def test_slow_headers_within_read_timeout_are_waited_for(proxy, ollama):
    answer = {"message": {"role": "assistant", "content": "late"}, "done": True}
    ollama.behave("slow-headers", delay=0.3, body=json.dumps(answer).encode())
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "late"


def test_slow_headers_past_read_timeout_are_a_504_streamed_or_not(proxy, ollama):
    for body in (CHAT, STREAM):
        ollama.behave("slow-headers", delay=5)
        reply = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=30)
        assert reply.status_code == 504
        assert error_of(reply)["code"] == "backend_timeout"


# -- a garbage backend -------------------------------------------------------------------


def test_html_where_json_belongs_is_a_502(proxy, ollama):
    ollama.behave("reply", content_type="text/html", body=b"<html><body>Hello</body></html>")
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 502
    assert error_of(reply)["message"] == (
        "The backend 'local' answered with something that is not JSON."
    )
    ollama.behave("reply", status=500, content_type="text/html", body=b"<h1>Oops</h1>")
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 502
    assert error_of(reply)["message"] == "The backend 'local' failed (500): <h1>Oops</h1>"


WRONG_SHAPES = [
    ({"message": "hello", "done": True}, "'message' is a string, expected an object"),
    (
        {"message": {"role": "assistant", "content": "", "tool_calls": "x"}, "done": True},
        "'message.tool_calls' is a string, expected an array",
    ),
    (
        {"message": {"role": "assistant", "content": "hi"}, "done": True, "prompt_eval_count": "7"},
        "'prompt_eval_count' is a string, expected an integer",
    ),
    (
        {"message": {"role": "assistant", "content": 5}, "done": True},
        "'message.content' is an integer, expected a string",
    ),
    (
        {"message": {"tool_calls": [{"function": {"name": 1}}]}, "done": True},
        "'message.tool_calls[0].function.name' is an integer, expected a string",
    ),
]


@pytest.mark.parametrize(("answer", "reason"), WRONG_SHAPES)
def test_a_whole_answer_of_the_wrong_shape_is_a_502_naming_the_connection(
    proxy, ollama, answer, reason
):
    ollama.behave("reply", body=json.dumps(answer).encode())
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 502
    assert error_of(reply) == {
        "message": f"The backend 'local' answered with a reply of the wrong shape: {reason}.",
        "type": "api_error",
        "param": None,
        "code": "backend_error",
    }


@pytest.mark.parametrize(("answer", "reason"), WRONG_SHAPES)
def test_a_streamed_line_of_the_wrong_shape_ends_the_stream_with_an_error_event(
    proxy, ollama, answer, reason
):
    ollama.behave(
        "stream",
        lines=ndjson({"message": {"role": "assistant", "content": "Hel"}, "done": False}, answer),
    )
    *_, last = stream(proxy, STREAM)
    assert last == {
        "error": {
            "message": f"The backend 'local' answered with a reply of the wrong shape: {reason}.",
            "type": "api_error",
            "param": None,
            "code": "backend_error",
        }
    }


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/messages", {"model": MODEL, "max_tokens": 64, "stream": True}),
        ("/v1/responses", {"model": MODEL, "stream": True}),
    ],
)
@pytest.mark.parametrize(("answer", "reason"), WRONG_SHAPES)
def test_the_agent_dialects_end_a_stream_of_the_wrong_shape_with_an_error_event(
    proxy, ollama, path, body, answer, reason
):
    ollama.behave(
        "stream",
        lines=ndjson({"message": {"role": "assistant", "content": "Hel"}, "done": False}, answer),
    )
    messages = [{"role": "user", "content": "Hi"}]
    request = {**body, "messages" if path == "/v1/messages" else "input": messages}
    with httpx.stream("POST", proxy.url + path, json=request, timeout=30) as reply:
        assert reply.status_code == 200
        blocks = reply.read().decode().strip().split("\n\n")
    last = json.loads(blocks[-1].split("data: ", 1)[1])
    wanted = f"The backend 'local' answered with a reply of the wrong shape: {reason}."
    assert wanted in json.dumps(last)


def test_wrong_shapes_in_embeddings_and_completions_are_502s(proxy, ollama):
    ollama.behave("reply", body=b'{"embeddings": [[0.1, "x"]]}')
    reply = httpx.post(
        proxy.url + "/v1/embeddings", json={"model": MODEL, "input": "hi"}, timeout=30
    )
    assert reply.status_code == 502
    assert error_of(reply)["message"] == (
        "The backend 'local' answered with a reply of the wrong shape: "
        "'embeddings[0][1]' is a string, expected a number."
    )
    ollama.behave("reply", body=b'{"response": ["a"], "done": true}')
    reply = httpx.post(
        proxy.url + "/v1/completions", json={"model": MODEL, "prompt": "hi"}, timeout=30
    )
    assert reply.status_code == 502
    assert "'response' is an array, expected a string" in error_of(reply)["message"]


def test_truncated_ndjson_ends_the_stream_with_an_error_event(proxy, ollama):
    ollama.behave(
        "stream",
        lines=[*ndjson({"message": {"content": "Hel"}, "done": False}), b'{"message": {"con'],
    )
    *chunks, last = stream(proxy, STREAM)
    assert chunks[-1]["choices"][0]["delta"] == {"content": "Hel"}
    assert last["error"]["message"].startswith("The backend 'local' sent a line that is not JSON: ")


@pytest.mark.parametrize("framing", ["reply", "chunked"])
def test_an_answer_in_many_pieces_is_whole(proxy, ollama, framing):
    text = "x" * 900_000  # under max_answer_mb (1)
    body = json.dumps({"message": {"role": "assistant", "content": text}, "done": True})
    ollama.behave(framing, body=body.encode())
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize("framing", ["reply", "chunked"])
def test_an_oversized_answer_is_a_502_not_a_gigabyte(proxy, ollama, framing):
    ollama.behave(framing, body=b'{"message": {"content": "' + b"x" * 1_500_000 + b'"}}')
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 502
    assert error_of(reply)["message"] == (
        "The backend 'local' answered more than 1 MiB (proxy.max_answer_mb)."
    )
    ollama.behave("stream", lines=[b'{"message": {"content": "' + b"x" * 1_500_000 + b'"}}\n'])
    *_, last = stream(proxy, STREAM)
    assert last["error"]["message"] == (
        "The backend 'local' sent a line of more than 1 MiB (proxy.max_answer_mb)."
    )


def test_an_oversized_passthrough_answer_is_a_502(passthrough, compatible):
    compatible.behave("reply", body=b'{"choices": [], "x": "' + b"x" * 1_500_000 + b'"}')
    reply = httpx.post(passthrough.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert reply.status_code == 502
    assert error_of(reply)["message"] == (
        "The backend 'remote' answered more than 1 MiB (proxy.max_answer_mb)."
    )


def test_a_passthrough_usage_of_the_wrong_shape_is_passed_on_not_a_500(passthrough, compatible):
    for usage in ('"many"', '{"prompt_tokens": "7", "completion_tokens": [1]}', "[1]"):
        compatible.behave("reply", body=b'{"choices": [], "usage": ' + usage.encode() + b"}")
        reply = httpx.post(passthrough.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"] == json.loads(usage)


# -- a backend killed mid-stream ---------------------------------------------------------


def test_a_backend_killed_mid_stream_ends_the_stream_with_an_error_event(patient, ollama):
    ollama.behave(
        "killed",
        lines=ndjson(*[{"message": {"content": f"t{i} "}, "done": False} for i in range(3)]),
    )
    *chunks, last = stream(patient, STREAM)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "t0 t1 t2 "
    assert last["error"]["code"] == "backend_error"
    assert last["error"]["message"].startswith(f"The backend 'local' ({ollama.url}) broke off")


def test_a_passthrough_backend_killed_mid_stream_ends_with_an_error_event(passthrough, compatible):
    chunk = {"choices": [{"index": 0, "delta": {"content": "t"}}]}
    compatible.behave("killed", lines=[b"data: " + json.dumps(chunk).encode() + b"\n\n"] * 3)
    *chunks, last = stream(passthrough, STREAM)
    assert chunks == [chunk] * 3
    assert last["error"]["message"].startswith(f"The backend 'remote' ({compatible.url}) broke off")
