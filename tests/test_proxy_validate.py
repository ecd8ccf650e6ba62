"""The request validator and translators: no input gives anything but an OpenAI error.

Hypothesis throws arbitrary JSON, and valid requests with one field replaced by arbitrary
JSON, at the checks and translators (fast, in-process), then a smaller sample at the real
proxy over a socket, where every answer must be 200 or an OpenAI-shaped 4xx.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackctl.config.model import Config
from stackctl.proxy import codec, responses, schemas, translate
from stackctl.proxy.app import create_app
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.upstream import Backend
from stackctl.proxy.validate import parse_body
from tests.fakes.asgi_server import ServerThread
from tests.fakes.ollama_api import FakeOllama

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["user", "assistant", "tool", "system", "text", "image_url", "function", "data:image/png;base64,AAAA", "https://x/y.png", "json_schema", "none", "auto", "required"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["role", "content", "type", "text", "image_url", "url", "tool_calls", "function", "name", "arguments", "id", "tool_call_id", "json_schema", "schema", "effort", "include_usage"]) | st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)  # fmt: skip
VALID = {
    "chat": {"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]},
    "completion": {"model": "gemma3:1b", "prompt": "Hi"},
    "embedding": {"model": "gemma3:1b", "input": "Hi"},
}
FIELDS = {
    "chat": sorted(schemas.CHAT_FIELDS),
    "completion": sorted(schemas.COMPLETION_FIELDS),
    "embedding": sorted(schemas.EMBEDDING_FIELDS),
}
CHECK = {
    "chat": schemas.check_chat,
    "completion": schemas.check_completion,
    "embedding": schemas.check_embedding,
}
TRANSLATE = {
    "chat": translate.chat_to_ollama,
    "completion": translate.completion_to_ollama,
    "embedding": translate.embedding_to_ollama,
}


def check_and_translate(kind: str, body: dict) -> None:
    try:
        CHECK[kind](body)
        native = TRANSLATE[kind](body, "gemma3:1b", {"num_ctx": 4096})
        codec.dumps(native)
    except OpenAIError as error:
        assert 400 <= error.status < 500
        assert isinstance(error.message, str) and error.message


@st.composite
def requests(draw) -> tuple[str, dict]:
    """A valid request of some kind with one field set to arbitrary JSON, or anything at all."""
    kind = draw(st.sampled_from(sorted(VALID)))
    if draw(st.booleans()):
        body = dict(draw(st.dictionaries(st.sampled_from(FIELDS[kind]), JSON, max_size=5)))
        return kind, {**VALID[kind], **body}
    body = json.loads(json.dumps(VALID[kind]))
    field = draw(st.sampled_from([*FIELDS[kind], "messages", "extra"]))
    body[field] = draw(JSON)
    return kind, body


@settings(max_examples=200, deadline=None)
@given(requests())
def test_checks_and_translation_only_raise_openai_errors(request):
    check_and_translate(*request)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_body_parses_or_is_a_400(raw):
    try:
        parse_body(raw)
    except OpenAIError as error:
        assert error.status == 400


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as ollama:
        ollama.install("gemma3:1b")
        app = create_app(
            Config().proxy, backends=[Backend("ollama", "ollama", ollama.url)], api_keys=[]
        )
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            yield client


ROUTES = {
    "chat": "/v1/chat/completions",
    "completion": "/v1/completions",
    "embedding": "/v1/embeddings",
}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests())
def test_over_the_socket_no_input_gives_a_500(proxy, request):
    kind, body = request
    reply = proxy.post(ROUTES[kind], content=json.dumps(body))
    if reply.status_code == 200:
        return
    assert 400 <= reply.status_code < 500, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_messages_translate_to_native_ones():
    messages = [
        {
            "role": "developer",
            "content": [{"type": "text", "text": "Be"}, {"type": "text", "text": "brief"}],
        },
        {"role": "user", "content": "Hi", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "thinking...",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": [1]}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "42"}]},
    ]
    assert translate.messages_to_ollama(messages) == [
        {"role": "system", "content": "Be\nbrief"},
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "thinking...",
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": [1]}}, "id": "call_1"}],
        },
        {"role": "tool", "content": "42", "tool_name": "f", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize(
    ("effort", "think"),
    [
        ("none", False),
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("xhigh", "max"),
    ],
)
def test_reasoning_effort_maps_to_think(effort, think):
    assert translate.think_value({"reasoning_effort": effort}) == think
    assert translate.think_value({"reasoning": {"effort": effort}}) == think
    assert translate.think_value({"reasoning_effort": effort, "think": True}) is True


def test_bad_tool_call_arguments_name_the_field():
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                ],
            }
        ],
    }
    with pytest.raises(OpenAIError) as caught:
        schemas.check_chat(body)
    assert caught.value.message == (
        "Invalid value for 'messages[0].tool_calls[0].function.arguments': expected a JSON object "
        "encoded as a string, but got '{oops' instead."
    )


def test_chat_stream_translation_is_exact_sse():
    stream = responses.ChatStream("m", include_usage=False)
    head = f'data: {{"id":"{stream.id}","object":"chat.completion.chunk","created":'
    first = stream.start().decode()
    assert first.startswith(head) and first.endswith(
        ',"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
    )
    last = stream.feed(
        {"message": {"content": ""}, "done": True, "done_reason": "length", "eval_count": 3}
    ).decode()
    assert last.endswith('"finish_reason":"length"}]}\n\ndata: [DONE]\n\n')
    assert stream.finished
    with pytest.raises(responses.StreamBroken):
        responses.ChatStream("m").feed({"error": "boom"})
