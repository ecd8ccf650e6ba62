"""The real coding agents against the proxy: Claude Code (`claude -p`) over /v1/messages and
OpenAI's Codex CLI (`codex exec`) over /v1/responses, each completing a turn with a tool call
and its result, in front of the fake Ollama.

The fake Ollama calls the tool the prompt names, with the `backquoted` command as its
argument, and answers `The tool said: <result>` once the agent sends the result back; so a
passing test means the agent parsed our stream, ran its tool, sent the result in its own
dialect, and printed our final answer. Both run offline: no login, telemetry, update checks.

The agents come from npm (`@anthropic-ai/claude-code`, `@openai/codex`); `.ci/run` installs
them and points STACKCTL_TEST_AGENTS_BIN at their bin directory. Without it the tests are
skipped locally and fail in CI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fakes.asgi_server import ServerThread
from fakes.ollama_api import FakeOllama

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend

AGENTS_BIN = os.environ.get("STACKCTL_TEST_AGENTS_BIN", "")
KEY = "sk-agents-test"
MODEL = "qwen3:8b"


def agent(name: str) -> str:
    if not AGENTS_BIN:
        if os.environ.get("CI"):
            pytest.fail("STACKCTL_TEST_AGENTS_BIN is not set: .ci/run installs the agents")
        pytest.skip("set STACKCTL_TEST_AGENTS_BIN to the node_modules/.bin holding claude, codex")
    path = Path(AGENTS_BIN) / name
    assert path.exists(), f"{path} is missing: npm install @anthropic-ai/claude-code @openai/codex"
    return str(path)


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install(MODEL, "gemma3:1b")
        yield fake


@pytest.fixture(scope="module")
def proxy(ollama: FakeOllama):
    config = Config()
    config.proxy.model_options = {MODEL: {"num_ctx": 65536}}
    backends = [Backend("ollama", "ollama", ollama.url)]
    with ServerThread(create_app(config.proxy, backends=backends, api_keys=[KEY])) as server:
        yield server


def offline_env(home: Path, **extra: str) -> dict[str, str]:
    """A scratch home and no proxies or keys from the machine running the tests."""
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TERM", "TMPDIR")}
    return {**keep, "HOME": str(home), "NO_COLOR": "1", **extra}


def tool_turns(ollama: FakeOllama) -> list[list[str]]:
    """The roles of each /api/chat request's messages, for requests that carried a tool result."""
    return [
        [m["role"] for m in r["body"]["messages"]]
        for r in ollama.requests("/api/chat")
        if any(m["role"] == "tool" for m in r["body"]["messages"])
    ]


def test_claude_code_runs_a_tool_and_answers(proxy, ollama, tmp_path):
    claude = agent("claude")
    env = offline_env(
        tmp_path / "home",
        ANTHROPIC_BASE_URL=proxy.url,
        ANTHROPIC_API_KEY=KEY,
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    work = tmp_path / "project"
    work.mkdir()
    done = subprocess.run(
        [claude, "-p", "Use the Bash tool to run `echo claude-tool-ran`", "--model", MODEL,
         "--allowedTools", "Bash(echo:*)", "--max-turns", "4"],
        cwd=work, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert "The tool said: claude-tool-ran" in done.stdout
    assert tool_turns(ollama), "Claude Code never sent the tool's result back"


def test_codex_runs_a_tool_and_answers(proxy, ollama, tmp_path):
    codex = agent("codex")
    home = tmp_path / "home"
    env = offline_env(home, CODEX_HOME=str(home / ".codex"), STACKCTL_KEY=KEY)
    (home / ".codex").mkdir(parents=True)
    work = tmp_path / "project"
    work.mkdir()
    provider = [
        "-c", "model_provider=stackctl",
        "-c", 'model_providers.stackctl.name="stackctl"',
        "-c", f'model_providers.stackctl.base_url="{proxy.url}/v1"',
        "-c", 'model_providers.stackctl.wire_api="responses"',
        "-c", 'model_providers.stackctl.env_key="STACKCTL_KEY"',
    ]  # fmt: skip
    done = subprocess.run(
        [codex, "exec", "--skip-git-repo-check", *provider, "-m", MODEL,
         "Use exec_command to run `echo codex-tool-ran`"],
        cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    # the fake model quotes exec_command's output, which says how the command went
    answer = done.stdout[done.stdout.index("The tool said:") :]
    assert "Process exited with code 0" in answer and "codex-tool-ran" in answer
    assert tool_turns(ollama), "Codex never sent the tool's result back"
