"""The Ollama path of a cluster, end to end (issue 12): two stackctl "machines" on this host,
each with its own home, STACKCTL_HOME, real systemd user manager and fake Ollama; `up`
installs Ray with Serve into each node's Ray venv (the fake uv installs the real Ray of the
test's Ray venv, STACKCTL_TEST_RAY_PYTHON), and the head's `ray-serve` unit runs the real Ray
Serve application on the real two-node cluster, in front of both Ollamas.

head `up` (Ray Serve waits for the second node) -> the worker's `up --join` -> the head healthy,
the proxy lists the models -> requests through the proxy reach both nodes' Ollamas, streamed
-> the worker's Ollama stopped: the service keeps answering from the head's.
"""

from __future__ import annotations

import os
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from stackctl.secrets import read_env_file
from tests.fakes.installer import FakeBin
from tests.fakes.ollama_state import State, read_requests
from tests.systemd_user import ManagerProcess, SystemdUser
from tests.test_e2e_cluster import RAY_PYTHON, Machine, free_blocks, ports_outside, worker_manager

pytestmark = pytest.mark.systemd
MODELS = ("gemma3:1b", "slow:1b")
__all__ = ["worker_manager"]  # the worker machine's systemd user manager (a fixture)


def seeded_store(home: Path) -> Path:
    """A machine's OLLAMA_MODELS, where its fake Ollama keeps its models and request log:
    the models there already (no pull), and the slow model 2 s per answer."""
    store = home / "ollama-models"
    state = State(store)
    for model in MODELS:
        state.install(model)
    state.set_behaviour(slow_tokens=20, slow_token_seconds=0.1)
    return store


def chats(store: Path) -> int:
    return sum(1 for r in read_requests(store) if r["path"] == "/api/chat")


def settled(count, want: int) -> int:
    """`count()` once it reaches `want` (the fake logs a request just after its last chunk),
    or what it is after 5 s."""
    deadline = time.monotonic() + 5
    while (found := count()) < want and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_ray_serve_spreads_the_heads_proxy_over_both_nodes_ollamas(
    worker_manager: ManagerProcess, systemd_user: SystemdUser, fake_bin: FakeBin
) -> None:
    fake_bin.scenario(linger="yes", ray_python=RAY_PYTHON)
    head_ports, worker_ports = free_blocks(2)
    head_ollama, worker_ollama, proxy_port, gcs_port, serve_port = ports_outside(
        5, range(head_ports, head_ports + 1000), range(worker_ports, worker_ports + 1000)
    )
    head_store = seeded_store(systemd_user.home)
    head = Machine({**os.environ}, systemd_user.home)
    worker = Machine.second(worker_manager)
    head.write_config(
        f"backend: ollama\nmodels: [{', '.join(MODELS)}]\n"
        f"ollama: {{port: {head_ollama}, env: {{OLLAMA_MODELS: {head_store}}}}}\n"
        f"proxy: {{port: {proxy_port}}}\nopenwebui: {{enabled: false}}\n"
        f"cluster: {{role: head, nodes: 2, port: {gcs_port}, node_ports: {head_ports}, "
        f"serve_port: {serve_port}}}\n"
    )

    # the head: Ray and Ollama up, Ray Serve waiting for the second node; `up` says so
    done = head.run("up", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ray Serve starts once all 2 nodes have joined" in done.stdout
    venv = systemd_user.home / ".local/share/stackctl/venvs/ray"
    assert ["uv", "pip", "install", "--python", str(venv / "bin/python"), "ray[serve]"] in (
        fake_bin.calls("uv")
    )
    done = head.run("cluster", "join-command")
    assert done.returncode == 0, done.stderr
    join = shlex.split(done.stdout.strip())
    assert join[4] == "--token"
    models = [arg for model in MODELS for arg in ("--model", model)]
    assert join[6:] == ["--ray-version", "2.60.0", "--python-version", "3.11", *models]
    host = join[3].rsplit(":", 1)[0]

    # the worker: its own Ollama (port, store) and block of Ray ports on this shared host
    worker_store = seeded_store(worker.home)
    worker.write_config(  # no models: the join command brings the head's
        f"ollama: {{port: {worker_ollama}, env: {{OLLAMA_MODELS: {worker_store}}}}}\n"
        f"cluster: {{role: worker, head: {host}, port: {gcs_port}, node_ports: {worker_ports}}}\n"
    )
    done = worker.run(*join[1:], "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"models {', '.join(MODELS)};" in done.stdout
    unit_dir = worker.home / ".config/systemd/user"
    units = sorted(p.name for p in unit_dir.glob("stackctl*") if p.is_file())
    assert units == ["stackctl-ollama.service", "stackctl-ray.service", "stackctl.target"]
    head_token = read_env_file(systemd_user.home / ".config/stackctl/secrets.env")
    worker_token = read_env_file(worker.home / ".config/stackctl/secrets.env")
    assert worker_token["RAY_AUTH_TOKEN"] == head_token["RAY_AUTH_TOKEN"] == join[5]

    # the head's Serve application deploys a replica per node; the proxy lists the models
    data = head.wait_status(0, timeout=300, proxy_lists="slow:1b")
    assert {row["service"] for row in data["services"]} >= {"ray", "ollama", "ray-serve"}
    before = (chats(head_store), chats(worker_store))
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="x", max_retries=0
    ) as sdk:

        def ask(i: int) -> str:
            stream = sdk.chat.completions.create(
                model="slow:1b", messages=[{"role": "user", "content": f"Hi {i}"}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        for rounds in range(1, 4):  # a busy machine can miss Serve's 0.1 s probe deadline
            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(ask, range(16))) == ["tick " * 20] * 16
            settled(lambda: chats(head_store) + chats(worker_store), sum(before) + 16 * rounds)
            served = (chats(head_store) - before[0], chats(worker_store) - before[1])
            assert sum(served) == 16 * rounds
            if min(served) > 0:
                break
    assert min(served) > 0, served

    # the worker's Ollama stops: Serve's health check takes its replica out of the routing
    assert worker.run("stop", "ollama").returncode == 0
    deadline = time.monotonic() + 60
    chat = {"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]}
    url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    while not all(httpx.post(url, json=chat, timeout=30).status_code == 200 for _ in range(10)):
        assert time.monotonic() < deadline, "the head's Ollama did not take every request"
        time.sleep(1)
    before_head = chats(head_store)
    for _ in range(10):
        assert httpx.post(url, json=chat, timeout=30).status_code == 200
    assert settled(lambda: chats(head_store), before_head + 10) == before_head + 10
