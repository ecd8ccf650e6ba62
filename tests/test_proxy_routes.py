"""Completions, embeddings, models, health, metrics, auth, CORS and request limits, over sockets."""

from __future__ import annotations

import base64
from array import array

import httpx
import openai
import pytest

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend
from tests.fakes.asgi_server import ServerThread
from tests.fakes.ollama_api import FakeOllama
from tests.fakes.ollama_inference import embedding

KEY = "sk-stackctl-test-key"


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "qwen2.5-coder:1.5b", "nomic-embed-text", "hf.co/org/repo:Q4_K_M")
        yield fake


def start_proxy(ollama: FakeOllama, keys: list[str], **proxy_settings) -> ServerThread:
    config = Config()
    config.proxy.aliases = {"embedder": "nomic-embed-text:latest"}
    for name, value in proxy_settings.items():
        setattr(config.proxy, name, value)
    app = create_app(
        config.proxy, backends=[Backend("ollama", "ollama", ollama.url)], api_keys=keys
    )
    return ServerThread(app).start()


@pytest.fixture(scope="module")
def proxy(ollama: FakeOllama):
    server = start_proxy(ollama, [], max_body_mb=1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def locked(ollama: FakeOllama):
    """A proxy with an API key and CORS for one origin."""
    server = start_proxy(ollama, [KEY, "sk-second-key"], cors_origins=["http://localhost:5173"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(proxy: ServerThread):
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="anything", max_retries=0) as sdk:
        yield sdk


def test_legacy_completion(client, ollama):
    reply = client.completions.create(model="gemma3:1b", prompt="Say hi")
    assert (reply.object, reply.model) == ("text_completion", "gemma3:1b")
    assert reply.id.startswith("cmpl-")
    assert (reply.choices[0].text, reply.choices[0].finish_reason) == ("You said: Say hi", "stop")
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert ollama.requests("/api/generate")[-1]["body"] == {
        "model": "gemma3:1b",
        "stream": False,
        "prompt": "Say hi",
        "think": False,
    }


def test_legacy_completion_streams_echoes_and_fills_in_the_middle(client, ollama):
    chunks = list(
        client.completions.create(
            model="gemma3:1b", prompt=["Hello"], echo=True, stream=True, max_tokens=2
        )
    )
    assert "".join(c.choices[0].text for c in chunks) == "HelloYou said: "
    assert chunks[-1].choices[0].finish_reason == "length"
    assert len({c.id for c in chunks}) == 1
    middle = client.completions.create(
        model="qwen2.5-coder:1.5b", prompt="def add(a, b):\n", suffix="\n\nprint(add(1, 2))"
    )
    assert middle.choices[0].text == "    return a + b"
    assert ollama.requests("/api/generate")[-1]["body"]["suffix"] == "\n\nprint(add(1, 2))"


def test_completion_prompt_lists_and_tokens_are_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="gemma3:1b", prompt=["one", "two"])
    assert caught.value.body["message"] == (
        "'prompt' is not supported: send one prompt per request (a list must hold exactly one string)"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="gemma3:1b", prompt=[1, 2, 3])
    assert (
        caught.value.body["message"]
        == "'prompt' is not supported: token arrays cannot be sent to Ollama; send the text"
    )


def test_embeddings_as_floats_and_base64(client, ollama):
    floats = client.embeddings.create(
        model="nomic-embed-text", input=["one", "two"], encoding_format="float"
    )
    assert floats.object == "list" and floats.model == "nomic-embed-text"
    assert [d.index for d in floats.data] == [0, 1]
    assert floats.data[0].embedding == embedding("one", 768)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 4
    packed = httpx.post(
        str(client.base_url) + "embeddings",
        json={"model": "embedder", "input": "one", "encoding_format": "base64"},
    ).json()
    decoded = array("f", base64.b64decode(packed["data"][0]["embedding"])).tolist()
    assert decoded == pytest.approx(embedding("one", 768), abs=1e-6)
    assert packed["model"] == "embedder"
    sdk_default = client.embeddings.create(model="embedder", input="one")  # the SDK asks for base64
    assert sdk_default.data[0].embedding == pytest.approx(embedding("one", 768), abs=1e-6)
    short = client.embeddings.create(
        model="nomic-embed-text", input="one", dimensions=64, encoding_format="float"
    )
    assert len(short.data[0].embedding) == 64
    assert ollama.requests("/api/embed")[-1]["body"] == {
        "model": "nomic-embed-text",
        "input": "one",
        "dimensions": 64,
    }


def test_embedding_token_input_is_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(
            model="nomic-embed-text", input=[[1, 2], [3]], encoding_format="float"
        )
    assert caught.value.body["param"] == "input"


def test_models_list_get_and_aliases(client):
    ids = [m.id for m in client.models.list()]
    assert ids == [
        "gemma3:1b",
        "qwen2.5-coder:1.5b",
        "nomic-embed-text:latest",
        "hf.co/org/repo:Q4_K_M",
        "embedder",
    ]
    model = client.models.retrieve("gemma3:1b")
    assert (model.id, model.object, model.owned_by) == ("gemma3:1b", "model", "ollama")
    assert model.created > 1_700_000_000
    assert client.models.retrieve("embedder").id == "embedder"
    assert client.models.retrieve("hf.co/org/repo:Q4_K_M").id == "hf.co/org/repo:Q4_K_M"
    assert client.models.retrieve("nomic-embed-text").id == "nomic-embed-text"  # :latest implied
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("llama9")


def test_health_and_metrics(proxy, locked, client):
    client.chat.completions.create(
        model="gemma3:1b", messages=[{"role": "user", "content": "count me"}]
    )
    assert httpx.get(locked.url + "/health").json() == {"status": "ok"}  # a stranger's view
    for server, headers in ((proxy, {}), (locked, {"Authorization": f"Bearer {KEY}"})):
        health = httpx.get(server.url + "/health", headers=headers)
        assert health.status_code == 200
        connection = health.json()["connections"][0]
        assert health.json()["status"] == "ok"
        assert (
            connection["name"],
            connection["reachable"],
            connection["models"],
            connection["error"],
        ) == ("ollama", True, 4, None)
    text = httpx.get(proxy.url + "/metrics").text
    assert (
        'stackctl_proxy_requests_total{route="/v1/chat/completions",model="gemma3:1b",status="200"}'
        in text
    )
    assert 'stackctl_proxy_tokens_total{model="gemma3:1b",direction="in"}' in text
    assert (
        'stackctl_proxy_request_duration_seconds_bucket{route="/v1/chat/completions",le="+Inf"}'
        in text
    )
    assert "stackctl_proxy_streams_in_flight 0" in text


def test_api_keys(locked):
    url = locked.url + "/v1/models"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == {
        "message": "You didn't provide an API key. Send it as `Authorization: Bearer <key>` "
        "or `x-api-key: <key>` (the proxy's keys are in proxy.api_keys or proxy.api_keys_file).",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    wrong = httpx.get(url, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == (
        "Incorrect API key provided. The proxy's keys are in proxy.api_keys or proxy.api_keys_file."
    )
    assert httpx.get(locked.url + "/metrics").status_code == 401
    for key in (KEY, "sk-second-key"):
        assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with openai.OpenAI(base_url=locked.url + "/v1", api_key=KEY, max_retries=0) as sdk:
        assert sdk.chat.completions.create(
            model="gemma3:1b", messages=[{"role": "user", "content": "Hi"}]
        ).choices
    with (
        openai.OpenAI(base_url=locked.url + "/v1", api_key="sk-nope", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


def test_cors_preflight_and_headers(locked):
    preflight = httpx.options(
        locked.url + "/v1/chat/completions",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert preflight.status_code == 204  # answered before auth: a preflight carries no key
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert preflight.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert (
        preflight.headers["access-control-allow-headers"]
        == "authorization, content-type, x-stainless-os"
    )
    refused = httpx.options(
        locked.url + "/v1/models",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status_code == 403
    assert (
        refused.json()["error"]["message"]
        == "This origin may not call the proxy: add it to proxy.cors_origins in stack.yaml."
    )
    listed = httpx.get(
        locked.url + "/v1/models",
        headers={"Origin": "http://localhost:5173", "Authorization": f"Bearer {KEY}"},
    )
    assert listed.headers["access-control-allow-origin"] == "http://localhost:5173"
    denied = httpx.get(locked.url + "/v1/models", headers={"Origin": "http://localhost:5173"})
    assert (
        denied.status_code == 401
        and denied.headers["access-control-allow-origin"] == "http://localhost:5173"
    )
    other = httpx.get(locked.url + "/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def error_of(reply: httpx.Response) -> tuple[int, str]:
    body = reply.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return reply.status_code, body["error"]["message"]


def test_body_limit_is_413(proxy):
    url = proxy.url + "/v1/chat/completions"
    big = b'{"model": "gemma3:1b", "messages": [], "pad": "' + b"x" * (1024 * 1024) + b'"}'
    expected = (
        413,
        "The request body is larger than the proxy's limit of 1 MiB (proxy.max_body_mb).",
    )
    assert error_of(httpx.post(url, content=big)) == expected

    def chunked():
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    assert error_of(httpx.post(url, content=chunked())) == expected  # no Content-Length


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            b"{not json",
            400,
            "We could not parse the JSON body of your request (Expecting property name enclosed in double quotes at line 1, column 2). Send a JSON object with Content-Type: application/json.",
        ),
        (
            b"",
            400,
            "We could not parse the JSON body of your request (the body is empty). Send a JSON object with Content-Type: application/json.",
        ),
        (b"[1, 2]", 400, "The request body must be a JSON object, but got an array instead."),
        (
            b'{"model": "gemma3:1b", "messages": [], "temperature": NaN}',
            400,
            "We could not parse the JSON body of your request (NaN is not valid JSON). Send a JSON object with Content-Type: application/json.",
        ),
        (
            b'{"model": "\xff"}',
            400,
            "We could not parse the JSON body of your request (it is not valid UTF-8: byte 0xff at offset 11). Send a JSON object with Content-Type: application/json.",
        ),
        (b'{"messages": []}', 400, "Missing required parameter: 'model'."),
        (
            b'{"model": 5, "messages": []}',
            400,
            "Invalid type for 'model': expected a string, but got an integer instead.",
        ),
        (b'{"model": "gemma3:1b"}', 400, "Missing required parameter: 'messages'."),
        (
            b'{"model": "gemma3:1b", "messages": []}',
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "robot", "content": "x"}]}',
            400,
            "Invalid value for 'messages[0].role': expected one of 'system', 'developer', 'user', 'assistant', 'tool', but got 'robot' instead.",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "user"}]}',
            400,
            "Missing required parameter: 'messages[0].content'.",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], "n": 2}',
            400,
            "'n' is not supported: Ollama returns one choice per request; send n separate requests",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], "logprobs": true}',
            400,
            "'logprobs' is not supported: the proxy does not return log probabilities",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], "temprature": 1}',
            400,
            "Unrecognized request argument supplied: temprature",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], "temperature": 3}',
            400,
            "Invalid value for 'temperature': expected a number from 0 to 2, but got 3 instead.",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}',
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ),
        (
            b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required", "tools": []}',
            400,
            "'tool_choice' is not supported: Ollama cannot force a tool call; use 'auto' (the model calls a tool when it needs one) or 'none'",
        ),
        (
            b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "The model 'nope' does not exist: GET /v1/models lists the models this proxy serves.",
        ),
    ],
)
def test_bad_requests_are_openai_errors_naming_the_field(proxy, body, status, message):
    reply = httpx.post(
        proxy.url + "/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert error_of(reply) == (status, message)


def test_unknown_route_and_method(proxy):
    assert error_of(httpx.post(proxy.url + "/v1/audio/speech", json={})) == (
        404,
        "Unknown request URL: POST /v1/audio/speech. The proxy serves /v1/chat/completions, "
        "/v1/completions, /v1/embeddings, /v1/messages, /v1/responses, /v1/models, /health "
        "and /metrics.",
    )
    assert error_of(httpx.get(proxy.url + "/v1/chat/completions")) == (
        405,
        "GET is not allowed on /v1/chat/completions.",
    )


def test_routes_without_the_v1_prefix(proxy):
    body = {"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]}
    assert (
        httpx.post(proxy.url + "/chat/completions", json=body).json()["choices"][0]["message"][
            "content"
        ]
        == "You said: Hi"
    )
    assert httpx.get(proxy.url + "/models").json()["object"] == "list"
