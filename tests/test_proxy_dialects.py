"""The agents' dialects as plain functions, no server: requests to the chat path, chat streams
(Ollama's NDJSON and an OpenAI-compatible server's SSE) to each dialect's events."""

from __future__ import annotations

import json

import pytest

from stackctl.proxy import messages_api, responses_api
from stackctl.proxy.chat_events import ChatChunkSource, OllamaSource
from stackctl.proxy.errors import OpenAIError


def sse_events(data: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in data.decode().split("\n\n"):
        if block.startswith("event: "):
            name, payload = block.split("\n", 1)
            events.append(
                (name.removeprefix("event: "), json.loads(payload.removeprefix("data: ")))
            )
    return events


def test_a_claude_code_request_becomes_a_chat_request():
    body = {
        "model": "qwen3:8b",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are an agent."},
            {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "List files", "cache_control": {"type": "ephemeral"}}
                ],
            },
            {"role": "system", "content": "Agent types: …"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I will run ls.", "signature": ""},
                    {"type": "text", "text": "Running ls."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "Bash",
                        "input": {"command": "ls"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "a.py"}],
                    },
                    {"type": "text", "text": "<system-reminder>ok</system-reminder>"},
                ],
            },
        ],
        "tools": [
            {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u"},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": []},
        "output_config": {"effort": "high"},
        "stream": True,
    }
    assert messages_api.to_chat(body) == {
        "model": "qwen3:8b",
        "max_tokens": 32000,
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are an agent.\nBe careful."},
            {"role": "user", "content": "List files"},
            {"role": "system", "content": "Agent types: …"},
            {
                "role": "assistant",
                "content": "Running ls.",
                "reasoning_content": "I will run ls.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a.py"},
            {"role": "user", "content": "<system-reminder>ok</system-reminder>"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "Bash",
                    "parameters": {"type": "object"},
                    "description": "Run a command",
                },
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"model": "m", "max_tokens": 5, "messages": [], "top_k": -1},
            "Invalid value for 'top_k': expected an integer from 0 to 2147483647, but got -1 instead.",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [], "betas": []},
            "Unrecognized request argument supplied: betas",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]},
            "Invalid value for 'messages[0].role': expected one of 'user', 'assistant', 'system', but got 'tool' instead.",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "https://x"}}
                        ],
                    }
                ],
            },
            "'messages[0].content[0].source.type' is not supported: images are taken inline only (source.type 'base64'); the proxy fetches no URLs and keeps no files",
        ),
    ],
)
def test_bad_messages_requests_name_the_field(body, message):
    with pytest.raises(OpenAIError) as error:
        messages_api.to_chat(body)
    assert error.value.message == message


def test_a_codex_request_becomes_a_chat_request():
    body = {
        "model": "qwen3:8b",
        "stream": True,
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "You are Codex."}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Run ls"}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": None},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "exec_command",
                "arguments": '{"cmd":"ls"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "a.py"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "exec_command",
                "strict": False,
                "parameters": {"type": "object"},
            },
            {"type": "namespace", "name": "multi_agent_v1", "tools": []},
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k",
        "client_metadata": {"turn_id": "t"},
    }
    assert responses_api.to_chat(body) == {
        "model": "qwen3:8b",
        "stream": True,
        "parallel_tool_calls": True,
        "messages": [
            {"role": "developer", "content": "You are Codex."},
            {"role": "user", "content": "Run ls"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a.py"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "exec_command",
                    "parameters": {"type": "object"},
                    "strict": False,
                },
            }
        ],
        "tool_choice": "auto",
    }


def test_ollama_lines_to_messages_events():
    writer = messages_api.MessagesStream("qwen3:8b")
    source = OllamaSource(writer)
    lines = [
        {"message": {"role": "assistant", "content": "", "thinking": "Hm"}, "done": False},
        {"message": {"role": "assistant", "content": "Let me look."}, "done": False},
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_9", "function": {"name": "Bash", "arguments": {"command": "ls"}}}
                ],
            },
            "done": False,
        },
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 30,
            "eval_count": 9,
        },
    ]
    out = writer.start() + b"".join(source.feed(json.dumps(line).encode()) for line in lines)
    events = sse_events(out)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[7][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_9",
        "name": "Bash",
        "input": {},
    }
    assert events[8][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"command":"ls"}'}
    assert [payload["index"] for name, payload in events[1:10]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert events[10][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 30, "output_tokens": 9},
    }


def test_chat_sse_to_responses_events():
    writer = responses_api.ResponsesStream({"model": "m", "input": "x"}, "m")
    source = ChatChunkSource(writer)

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return (
            b"data: "
            + json.dumps(
                {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            ).encode()
        )

    lines = [
        chunk({"role": "assistant", "content": "On it."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({}, "tool_calls"),
        b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}',
        b"data: [DONE]",
    ]
    out = writer.start() + b"".join(source.feed(line) for line in lines)
    events = sse_events(out)
    names = [name for name, _ in events]
    assert names == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert [payload["sequence_number"] for _, payload in events] == list(range(len(events)))
    assert all(payload["type"] == name for name, payload in events)
    done = events[-1][1]["response"]
    assert [item["type"] for item in done["output"]] == ["message", "function_call"]
    assert done["output"][1]["arguments"] == '{"a":1}' and done["output"][1]["call_id"] == "call_1"
    assert done["usage"]["input_tokens"] == 12 and done["usage"]["output_tokens"] == 7


def test_anthropic_error_types_follow_the_status():
    kinds = {
        status: messages_api.error_body(OpenAIError(status, "x"))["error"]["type"]
        for status in (400, 401, 404, 413, 429, 502, 503, 504)
    }
    assert kinds == {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        502: "api_error",
        503: "overloaded_error",
        504: "api_error",
    }
