"""/v1/responses over real sockets: the openai SDK's responses.create -> the proxy -> the fake
Ollama (and the fake OpenAI-compatible server, for the passthrough side of the chat path)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fakes.asgi_server import ServerThread, proxy_thread
from fakes.ollama_api import FakeOllama
from fakes.openai_backend import FakeOpenAIBackend

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "required": ["city"],
        "properties": {"city": {"type": "string"}},
    },
}


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "qwen3:8b", "slow:latest")
        yield fake


@pytest.fixture(scope="module")
def vllm():
    with FakeOpenAIBackend(["served-model"]) as fake:
        yield fake


@pytest.fixture(scope="module")
def proxy(ollama: FakeOllama, vllm: FakeOpenAIBackend):
    config = Config()
    config.proxy.aliases = {"gpt-5-codex": "qwen3:8b"}
    config.proxy.model_options = {"qwen3:8b": {"num_ctx": 8192}}
    backends = [
        Backend("ollama", "ollama", ollama.url),
        Backend("vllm", "openai_compatible", vllm.url + "/v1"),
    ]
    app = create_app(config.proxy, backends=backends, api_keys=[])
    with proxy_thread(app, config.proxy) as server:
        yield server


@pytest.fixture(scope="module")
def client(proxy: ServerThread):
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-any", max_retries=0) as sdk:
        yield sdk


def last_native(ollama: FakeOllama) -> dict:
    return ollama.requests("/api/chat")[-1]["body"]


def test_plain_text(client, ollama):
    reply = client.responses.create(model="gemma3:1b", instructions="Be brief.", input="Hi")
    assert reply.id.startswith("resp_") and reply.object == "response"
    assert (reply.status, reply.incomplete_details) == ("completed", None)
    assert reply.output_text == "You said: Hi"
    assert reply.output[0].type == "message" and reply.output[0].role == "assistant"
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (
        11,
        3,
        14,
    )
    assert last_native(ollama)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_items_roles_and_options(client, ollama):
    reply = client.responses.create(
        model="gpt-5-codex",
        input=[
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Dev"}],
            },
            {"role": "user", "content": "One"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Two"}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "user", "content": [{"type": "input_text", "text": "Three"}]},
        ],
        temperature=0.3,
        top_p=0.8,
        max_output_tokens=40,
        reasoning={"effort": "low", "summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="abc",
    )
    assert reply.model == "gpt-5-codex" and reply.store is False
    assert [item.type for item in reply.output] == ["reasoning", "message"]
    native = last_native(ollama)
    assert native["model"] == "qwen3:8b" and native["think"] == "low"
    assert native["options"] == {
        "num_ctx": 8192,
        "num_predict": 40,
        "temperature": 0.3,
        "top_p": 0.8,
    }
    assert [(m["role"], m["content"]) for m in native["messages"]] == [
        ("system", "Dev"),
        ("user", "One"),
        ("assistant", "Two"),
        ("user", "Three"),
    ]


def test_function_call_and_output_round_trip(client, ollama):
    first = client.responses.create(
        model="qwen3:8b", input="Weather in Paris?", tools=[WEATHER], tool_choice="auto"
    )
    call = next(item for item in first.output if item.type == "function_call")
    assert (call.name, json.loads(call.arguments), call.status) == (
        "get_weather",
        {"city": "Paris"},
        "completed",
    )
    second = client.responses.create(
        model="qwen3:8b",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"},
        ],
    )
    assert second.output_text == "The tool said: 18 C, sunny"
    sent = last_native(ollama)["messages"]
    assert sent[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": call.call_id}
    ]
    assert sent[2]["role"] == "tool" and sent[2]["tool_call_id"] == call.call_id


def test_stream_events_in_order(client):
    stream = client.responses.create(model="gemma3:1b", input="Hi there", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "You said: Hi there"
    final = events[-1].response
    assert final.output_text == text and final.usage.output_tokens == 4


def test_stream_function_call(client):
    stream = client.responses.create(
        model="qwen3:8b", input="Weather in Paris?", tools=[WEATHER], stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "function_call"]


def test_incomplete_at_max_output_tokens(client):
    reply = client.responses.create(model="gemma3:1b", input="one two three", max_output_tokens=2)
    assert (reply.status, reply.incomplete_details.reason) == ("incomplete", "max_output_tokens")
    events = list(
        client.responses.create(
            model="gemma3:1b", input="one two three", max_output_tokens=2, stream=True
        )
    )
    assert events[-1].type == "response.incomplete"


def test_json_schema_text_format(client, ollama):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reply = client.responses.create(
        model="gemma3:1b",
        input="A city",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema}},
    )
    assert json.loads(reply.output_text) == {"city": "example"}
    assert last_native(ollama)["format"] == schema


def test_previous_response_id_is_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gemma3:1b", input="Hi", previous_response_id="resp_1")
    assert refused.value.body == {
        "message": "'previous_response_id' is not supported: the proxy stores no responses (it "
        "is stateless); send the whole conversation in 'input', as Codex does with store: false",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "unsupported_parameter",
    }


def test_errors_are_openai_shaped(client, proxy):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="Hi")
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(
            model="gemma3:1b",
            input=[{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
        )
    assert bad.value.body["param"] == "input[0].content[0].type"
    missing = httpx.post(proxy.url + "/v1/responses", json={"model": "gemma3:1b"})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "Missing required parameter: 'input'."


def test_hosted_tools_are_not_offered(client, ollama):
    client.responses.create(model="qwen3:8b", input="Hi", tools=[WEATHER, {"type": "web_search"}])
    assert [t["function"]["name"] for t in last_native(ollama)["tools"]] == ["get_weather"]


def test_openai_compatible_backend(client, vllm):
    reply = client.responses.create(model="served-model", input="Hi there", max_output_tokens=30)
    assert reply.output_text == "You said: Hi there"
    sent = vllm.requests("/v1/chat/completions")[-1]["body"]
    assert sent == {
        "model": "served-model",
        "messages": [{"role": "user", "content": "Hi there"}],
        "max_tokens": 30,
    }
    events = list(client.responses.create(model="served-model", input="Hi there", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "You said: Hi there"
    assert events[-1].response.usage.input_tokens == 7
    assert vllm.requests("/v1/chat/completions")[-1]["body"]["stream_options"] == {
        "include_usage": True
    }


def test_hang_up_cancels_the_backend(proxy, ollama):
    body = {"model": "slow", "input": "Hi", "stream": True}
    with httpx.stream("POST", proxy.url + "/v1/responses", json=body) as reply:
        for _ in reply.iter_raw():
            break
    for _ in range(100):
        outcome = ollama.requests("/api/chat")[-1].get("outcome")
        if outcome != "running":
            break
        import time

        time.sleep(0.05)
    assert outcome == "cancelled"


def test_count_tokens_uses_the_backend_tokenizer(proxy, vllm):
    body = {"model": "served-model", "messages": [{"role": "user", "content": "one two three"}]}
    counted = httpx.post(proxy.url + "/v1/messages/count_tokens", json=body)
    assert counted.json() == {"input_tokens": 7}  # the fake vLLM's count, not the estimate
    sent = vllm.requests("/tokenize")[-1]["body"]
    assert sent == {
        "model": "served-model",
        "messages": [{"role": "user", "content": "one two three"}],
        "add_generation_prompt": True,
    }


def test_a_backend_failing_mid_stream_ends_with_response_failed(client):
    events = list(
        client.responses.create(
            model="gemma3:1b", input="one two three [fake:error-mid-stream]", stream=True
        )
    )
    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "backend_error"
    assert failed.error.message.startswith("The backend 'ollama' failed mid-answer:")


def test_messages_on_an_openai_compatible_backend_report_the_stop_sequence(proxy, vllm):
    """The Messages route on the same chat path: vLLM names the stop string that ended it."""
    import anthropic

    with anthropic.Anthropic(base_url=proxy.url, api_key="any", max_retries=0) as client:
        request = {
            "model": "served-model",
            "max_tokens": 50,
            "stop_sequences": ["three"],
            "messages": [{"role": "user", "content": "one two three four"}],
        }
        reply = client.messages.create(**request)
        with client.messages.stream(**request) as stream:
            final = stream.get_final_message()
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", "three")
    assert reply.content[0].text == "You said: one two "
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "three")
    assert vllm.requests("/v1/chat/completions")[-1]["body"]["stop"] == ["three"]
