"""/v1/chat/completions over real sockets: the openai SDK -> the proxy -> the fake Ollama.

Each test checks what the client gets and, through the fake's request log, the exact native
body the proxy sent to Ollama.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend
from tests.fakes.asgi_server import ServerThread, proxy_thread
from tests.fakes.ollama_api import FakeOllama

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string"}},
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "gemma3:4b", "qwen3:8b", "slow:latest")
        yield fake


@pytest.fixture(scope="module")
def proxy(ollama: FakeOllama):
    config = Config()
    config.proxy.aliases = {"gpt-4o": "gemma3:1b"}
    config.proxy.model_options = {"qwen3:8b": {"num_ctx": 8192, "temperature": 0.6}}
    app = create_app(config.proxy, backends=[Backend("ollama", "ollama", ollama.url)], api_keys=[])
    with proxy_thread(app, config.proxy) as server:
        yield server


@pytest.fixture(scope="module")
def client(proxy: ServerThread):
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-any", max_retries=0) as sdk:
        yield sdk


def last_native(ollama: FakeOllama) -> dict:
    return ollama.requests("/api/chat")[-1]["body"]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_answer_in_openai_shape(client, ollama):
    reply = client.chat.completions.create(model="gemma3:1b", messages=user("Hi"))
    assert reply.id.startswith("chatcmpl-") and len(reply.id) == 41
    assert (reply.object, reply.model) == ("chat.completion", "gemma3:1b")
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", "You said: Hi")
    assert choice.finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        5,
        3,
        8,
    )
    assert last_native(ollama) == {
        "model": "gemma3:1b",
        "stream": False,
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_stream_chunks_share_one_id_and_end_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="gemma3:1b",
            messages=user("Hello there"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: Hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_headers_and_done_event(proxy):
    body = {"model": "gemma3:1b", "messages": user("Hi"), "stream": True}
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=body)
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-accel-buffering"] == "no"
    events = [e for e in reply.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_alias_is_answered_under_the_name_asked_for(client, ollama):
    reply = client.chat.completions.create(model="gpt-4o", messages=user("Hi"))
    assert reply.model == "gpt-4o"
    assert last_native(ollama)["model"] == "gemma3:1b"


def test_parameters_become_native_options(client, ollama):
    client.chat.completions.create(
        model="qwen3:8b",
        messages=[{"role": "developer", "content": "Be brief."}, *user("Hi")],
        max_completion_tokens=50,
        top_p=0.9,
        seed=7,
        stop="END",
        presence_penalty=0.5,
        frequency_penalty=0.25,
        response_format={"type": "json_object"},
        reasoning_effort="low",
        extra_body={"keep_alive": "10m", "top_k": 20, "options": {"min_p": 0.05}},
    )
    assert last_native(ollama) == {
        "model": "qwen3:8b",
        "stream": False,
        "options": {
            "num_ctx": 8192,  # pinned by proxy.model_options
            "temperature": 0.6,  # a configured default, not sent by the client
            "min_p": 0.05,
            "num_predict": 50,
            "top_p": 0.9,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "top_k": 20,
            "stop": ["END"],
        },
        "keep_alive": "10m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "format": "json",
        "think": "low",
    }


def test_a_client_cannot_change_a_pinned_load_option(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="qwen3:8b", messages=user("Hi"), extra_body={"options": {"num_ctx": 2048}}
        )
    assert caught.value.body["message"] == (
        "'options.num_ctx' decides how Ollama loads the model (another value reloads it): "
        "this model is pinned to 8192."
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gemma3:1b", messages=user("Hi"), extra_body={"options": {"num_ctx": 2048}}
        )
    assert caught.value.body["message"].endswith(
        "set it for this model in proxy.model_options.gemma3:1b."
    )


def test_json_schema_becomes_the_native_format(client, ollama):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reply = client.chat.completions.create(
        model="gemma3:1b",
        messages=user("Where?"),
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    assert json.loads(reply.choices[0].message.content) == {"city": "example"}
    assert last_native(ollama)["format"] == schema


def test_text_parts_join_and_data_uri_images_go_native(client, ollama):
    content = [
        {"type": "text", "text": "What is"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "this?"},
    ]
    reply = client.chat.completions.create(
        model="gemma3:4b", messages=[{"role": "user", "content": content}]
    )
    assert reply.choices[0].message.content == "I see 1 image. You said: What is\nthis?"
    assert last_native(ollama)["messages"] == [
        {"role": "user", "content": "What is\nthis?", "images": [PNG]}
    ]


def test_a_remote_image_url_is_refused(client):
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gemma3:4b", messages=[{"role": "user", "content": content}]
        )
    assert caught.value.body == {
        "message": "'messages[0].content[0].image_url.url' is not supported: remote image URLs "
        "are not fetched (the proxy makes no outbound requests on a client's behalf); send the "
        "image inline as a data: URI (data:image/png;base64,...)",
        "type": "invalid_request_error",
        "param": "messages[0].content[0].image_url.url",
        "code": "unsupported_parameter",
    }


def test_tool_call_round_trip(client, ollama):
    reply = client.chat.completions.create(
        model="qwen3:8b",
        messages=user("Weather in Paris?"),
        tools=[WEATHER],
        reasoning_effort="none",
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')
    assert last_native(ollama)["tools"] == [WEATHER] and last_native(ollama)["think"] is False

    history = [
        *user("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "11 degrees"},
    ]
    answer = client.chat.completions.create(model="qwen3:8b", messages=history, tools=[WEATHER])
    assert answer.choices[0].message.content == "The tool said: 11 degrees"
    sent = last_native(ollama)["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": call.id}
        ],
    }
    assert sent[2] == {
        "role": "tool",
        "content": "11 degrees",
        "tool_name": "get_weather",
        "tool_call_id": call.id,
    }


def test_tool_calls_stream_as_indexed_deltas(client):
    chunks = list(
        client.chat.completions.create(
            model="qwen3:8b",
            messages=user("get_weather and get_time please"),
            tools=[WEATHER, TIME],
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    calls = [tc for d in deltas for tc in d.tool_calls]
    assert [(tc.index, tc.function.name, tc.function.arguments) for tc in calls] == [
        (0, "get_weather", '{"city": "Paris"}'),
        (1, "get_time", "{}"),
    ]
    assert all(tc.id.startswith("call_") and tc.type == "function" for tc in calls)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    thinking = "".join(
        c.choices[0].delta.reasoning_content or ""
        for c in chunks
        if c.choices and hasattr(c.choices[0].delta, "reasoning_content")
    )
    assert thinking == "The user wrote 4 words, so I answer briefly."


def test_parallel_tool_calls_false_keeps_one_call(client):
    reply = client.chat.completions.create(
        model="qwen3:8b",
        messages=user("get_weather and get_time please"),
        tools=[WEATHER, TIME],
        parallel_tool_calls=False,
    )
    assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["get_weather"]


def test_tool_calls_without_ids_get_made_up_ones(client, ollama):
    ollama.behave(version="0.12.9")
    try:
        reply = client.chat.completions.create(
            model="qwen3:8b", messages=user("Weather?"), tools=[WEATHER]
        )
    finally:
        ollama.behave(version="0.32.3")
    call_id = reply.choices[0].message.tool_calls[0].id
    assert call_id.startswith("call_") and len(call_id) == 29
    assert "id" not in ollama.requests("/api/chat")[-1]["body"]["tools"][0]


def test_tool_choice_none_sends_no_tools(client, ollama):
    reply = client.chat.completions.create(
        model="qwen3:8b", messages=user("Hi"), tools=[WEATHER], tool_choice="none"
    )
    assert reply.choices[0].finish_reason == "stop"
    assert "tools" not in last_native(ollama)


def test_thinking_is_reasoning_content_never_content(client):
    reply = client.chat.completions.create(model="qwen3:8b", messages=user("Hi"))
    message = reply.choices[0].message
    assert message.content == "You said: Hi"
    assert message.reasoning_content == "The user wrote 1 words, so I answer briefly."


def test_length_limit_is_finish_reason_length(client):
    reply = client.chat.completions.create(model="gemma3:1b", messages=user("a b c"), max_tokens=2)
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == (
        "You said: ",
        "length",
    )
    streamed = list(
        client.chat.completions.create(
            model="gemma3:1b", messages=user("a b c"), max_tokens=2, stream=True
        )
    )
    assert streamed[-1].choices[0].finish_reason == "length"


def test_error_line_mid_stream_raises_in_the_sdk(client):
    stream = client.chat.completions.create(
        model="gemma3:1b", messages=user("one two three [fake:error-mid-stream]"), stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert caught.value.message == (
        "The backend 'ollama' failed mid-answer: an error was encountered while running the model: unexpected EOF"
    )


def test_stream_ending_without_done_raises_in_the_sdk(client):
    stream = client.chat.completions.create(
        model="gemma3:1b", messages=user("one two three [fake:no-done]"), stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert caught.value.message == (
        "The backend 'ollama' ended the stream before the answer was complete (no done line)"
    )


def test_backend_errors_keep_their_meaning(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="llama9", messages=user("Hi"))
    assert (
        caught.value.body["message"]
        == "The model 'llama9' does not exist: GET /v1/models lists the models this proxy serves."
    )
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemma3:1b", messages=user("Hi"), tools=[WEATHER])
    assert caught.value.body["message"] == (
        "The backend 'ollama' says: registry.ollama.ai/library/gemma3:1b does not support tools"
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="gemma3:1b", messages=user("[fake:error-500]"), stream=True
        )
    assert caught.value.status_code == 502
    assert caught.value.body["message"].startswith(
        "The backend 'ollama' failed (500): model runner has unexpectedly stopped"
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gemma3:1b", messages=user("[fake:busy]"))
    assert caught.value.status_code == 503


def test_upstream_gets_the_proxy_host_not_the_clients(proxy, ollama):
    body = {"model": "gemma3:1b", "messages": user("Hi")}
    reply = httpx.post(
        proxy.url + "/v1/chat/completions", json=body, headers={"Host": "llm.example.com"}
    )
    assert reply.status_code == 200
    assert ollama.requests("/api/chat")[-1]["host"] == ollama.url.removeprefix("http://")


def test_stream_is_not_buffered_and_hanging_up_cancels_ollama(proxy, ollama):
    body = {"model": "slow", "messages": user("go"), "stream": True}
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body) as reply:
        events = reply.iter_lines()
        seen = [line for line in (next(events) for _ in range(6)) if line.startswith("data: ")]
        assert json.loads(seen[-1][6:])["choices"][0]["delta"] == {"content": "tick "}
        # the first tokens arrived while Ollama was still generating: nothing was held back
        assert ollama.requests("/api/chat")[-1]["outcome"] == "running"
    deadline = time.monotonic() + 10
    while ollama.requests("/api/chat")[-1]["outcome"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ollama.requests("/api/chat")[-1]["outcome"] == "cancelled"
