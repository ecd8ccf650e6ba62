"""/v1/messages over real sockets: the official anthropic SDK -> the proxy -> the fake Ollama.

Each test checks what the SDK gets and, through the fake's request log, the /api/chat body
the proxy sent (the Messages request runs on the chat path).
"""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
from fakes.asgi_server import ServerThread, proxy_thread
from fakes.ollama_api import FakeOllama

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "required": ["city"],
        "properties": {"city": {"type": "string"}},
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
KEY = "sk-messages-test"


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "gemma3:4b", "qwen3:8b", "slow:latest")
        yield fake


@pytest.fixture(scope="module")
def proxy(ollama: FakeOllama):
    config = Config()
    config.proxy.aliases = {"claude-sonnet-4-5": "qwen3:8b"}
    config.proxy.model_options = {"qwen3:8b": {"num_ctx": 8192, "temperature": 0.6}}
    config.proxy.max_body_mb = 1
    backends = [Backend("ollama", "ollama", ollama.url)]
    app = create_app(config.proxy, backends=backends, api_keys=[KEY])
    with proxy_thread(app, config.proxy) as server:
        yield server


@pytest.fixture(scope="module")
def client(proxy: ServerThread):
    with anthropic.Anthropic(base_url=proxy.url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


def last_native(ollama: FakeOllama) -> dict:
    return ollama.requests("/api/chat")[-1]["body"]


def test_create_answers_a_message(client, ollama):
    reply = client.messages.create(
        model="gemma3:1b",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert reply.id.startswith("msg_") and reply.type == "message" and reply.role == "assistant"
    assert reply.model == "gemma3:1b"
    assert [(b.type, b.text) for b in reply.content] == [("text", "You said: Hi")]
    assert (reply.stop_reason, reply.stop_sequence) == ("end_turn", None)
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (11, 3)
    assert last_native(ollama) == {
        "model": "gemma3:1b",
        "stream": False,
        "options": {"num_predict": 64},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
    }


def test_alias_pins_and_sampling_reach_ollama(client, ollama):
    reply = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=50,
        stop_sequences=["END"],
        extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 20},  # older clients send them
        thinking={"type": "disabled"},
        metadata={"user_id": "u1"},
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    )
    assert reply.model == "claude-sonnet-4-5"
    native = last_native(ollama)
    assert native["model"] == "qwen3:8b" and native["think"] is False
    assert native["options"] == {
        "num_ctx": 8192,
        "num_predict": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "stop": ["END"],
    }


def test_thinking_comes_back_as_a_thinking_block(client):
    reply = client.messages.create(
        model="qwen3:8b",
        max_tokens=200,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking == "The user wrote 1 words, so I answer briefly."


def test_max_tokens_stops_with_max_tokens(client):
    reply = client.messages.create(
        model="gemma3:1b", max_tokens=2, messages=[{"role": "user", "content": "one two three"}]
    )
    assert reply.stop_reason == "max_tokens"
    assert reply.content[0].text == "You said: "


def test_tool_use_then_tool_result_round_trip(client, ollama):
    first = client.messages.create(
        model="qwen3:8b",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "auto"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    assert last_native(ollama)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Current weather in a city",
            },
        }
    ]
    second = client.messages.create(
        model="qwen3:8b",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[-1].text == "The tool said: 18 C, sunny"
    sent = last_native(ollama)["messages"]
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": call.id}
    ]
    assert sent[2] == {
        "role": "tool",
        "content": "18 C, sunny",
        "tool_name": "get_weather",
        "tool_call_id": call.id,
    }
    assert sent[3] == {"role": "user", "content": "Thanks"}


def test_tool_result_error_and_blocks(client, ollama):
    client.messages.create(
        model="qwen3:8b",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "Run it"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "run", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [{"type": "text", "text": "command not found"}],
                    }
                ],
            },
        ],
    )
    assert last_native(ollama)["messages"][-1]["content"] == "Error: command not found"


def test_image_block_reaches_ollama(client, ollama):
    reply = client.messages.create(
        model="gemma3:4b",
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert reply.content[0].text.startswith("I see 1 image.")
    assert last_native(ollama)["messages"][0]["images"] == [PNG]


def test_stream_event_sequence(client):
    with client.messages.stream(
        model="gemma3:1b", max_tokens=64, messages=[{"role": "user", "content": "Hi there"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds[1] == "content_block_start" and "content_block_delta" in kinds
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert final.content[0].text == "You said: Hi there"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (6, 4)


def test_stream_tool_use_and_thinking(client):
    with client.messages.stream(
        model="qwen3:8b",
        max_tokens=100,
        tools=[WEATHER],
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert final.content[1].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert "thinking_delta" in deltas and deltas[-1] == "input_json_delta"


def test_count_tokens_estimates(client):
    counted = client.messages.count_tokens(
        model="gemma3:1b",
        system="x" * 40,
        messages=[{"role": "user", "content": "y" * 400}],
    )
    assert counted.input_tokens == 110  # 440 characters at 4 a token (no tokenizer in Ollama)


def test_errors_have_anthropic_shape(client, proxy):
    with pytest.raises(anthropic.NotFoundError) as missing_model:
        client.messages.create(
            model="nope:1b", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )
    assert missing_model.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "The model 'nope:1b' does not exist: GET /v1/models lists the models "
            "this proxy serves.",
        },
    }
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="gemma3:1b",
            max_tokens=5,
            messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],
        )
    assert bad.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "'messages[0].content[0].type' is not supported: the models behind this "
        "proxy take text and images, not 'document'",
    }
    no_max = httpx.post(
        proxy.url + "/v1/messages",
        headers={"x-api-key": KEY},
        json={"model": "gemma3:1b", "messages": []},
    )
    assert no_max.status_code == 400
    assert no_max.json()["error"]["message"] == "Missing required parameter: 'max_tokens'."


def test_forcing_a_tool_is_refused_on_ollama(client):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="qwen3:8b",
            max_tokens=50,
            tools=[WEATHER],
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "Hi"}],
        )
    assert "Ollama cannot force a tool call" in refused.value.body["error"]["message"]


def test_keys_x_api_key_and_bearer(proxy):
    body = {"model": "gemma3:1b", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    assert (
        httpx.post(proxy.url + "/v1/messages", json=body, headers={"x-api-key": KEY}).status_code
        == 200
    )
    bearer = {"authorization": f"Bearer {KEY}"}
    assert httpx.post(proxy.url + "/v1/messages", json=body, headers=bearer).status_code == 200
    wrong = httpx.post(proxy.url + "/v1/messages", json=body, headers={"x-api-key": "sk-wrong"})
    assert wrong.status_code == 401
    assert wrong.json() == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "Incorrect API key provided. The proxy's keys are in proxy.api_keys or "
            "proxy.api_keys_file.",
        },
    }


def test_too_large_is_413(proxy):
    big = b'{"model": "gemma3:1b", "max_tokens": 5, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    reply = httpx.post(
        proxy.url + "/v1/messages?beta=true", headers={"x-api-key": KEY}, content=big
    )
    assert reply.status_code == 413
    assert reply.json()["error"] == {
        "type": "request_too_large",
        "message": "The request body is larger than the proxy's limit of 1 MiB (proxy.max_body_mb).",
    }


def test_metrics_have_the_route(client, proxy):
    client.messages.create(
        model="gemma3:1b", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
    )
    text = httpx.get(proxy.url + "/metrics", headers={"x-api-key": KEY}).text
    assert (
        'stackctl_proxy_requests_total{route="/v1/messages",model="gemma3:1b",status="200"}' in text
    )


def test_a_model_that_cannot_call_tools_is_a_clear_400(client):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="gemma3:1b",
            max_tokens=50,
            tools=[WEATHER],
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        )
    assert refused.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "The backend 'ollama' says: registry.ollama.ai/library/gemma3:1b does not "
        "support tools",
    }


def test_ping_while_the_backend_is_silent(proxy, ollama, monkeypatch):
    from stackctl.proxy import dialects

    monkeypatch.setattr(dialects, "PING_SECONDS", 0.1)
    ollama.behave(slow_tokens=2, slow_token_seconds=0.5)
    try:
        body = {
            "model": "slow",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        }
        reply = httpx.post(
            proxy.url + "/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=10
        )
    finally:
        ollama.behave(slow_tokens=400, slow_token_seconds=0.05)
    events = [
        line.removeprefix("event: ")
        for line in reply.text.splitlines()
        if line.startswith("event: ")
    ]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert events.count("ping") >= 4  # about every 0.1 s of the 1 s the fake took
    assert reply.text.count('event: ping\ndata: {"type":"ping"}\n\n') == events.count("ping")


def test_a_backend_failing_mid_stream_ends_with_an_error_event(proxy):
    body = {
        "model": "gemma3:1b",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "one two three [fake:error-mid-stream]"}],
    }
    reply = httpx.post(proxy.url + "/v1/messages", json=body, headers={"x-api-key": KEY})
    assert reply.status_code == 200
    *_, last = [block for block in reply.text.split("\n\n") if block]
    name, data = last.split("\n")
    assert name == "event: error"
    error = json.loads(data.removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert error["error"]["message"].startswith("The backend 'ollama' failed mid-answer:")
