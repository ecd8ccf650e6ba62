"""The fake vLLM's Ray executor: tests/fakes/ray_vllm_driver.py run with the real Ray of the
test's Ray venv (scenario `ray_python`), which must report READY before the fake serves;
when it exits later (a node of the placement group died) the fake vLLM exits too, as the
real engine does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.fakes.fakebin import fail, scenario

DRIVER = Path(__file__).with_name("ray_vllm_driver.py")


def _flag(args: list[str], name: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def hold_the_gpus(args: list[str]) -> None:
    backend = _flag(args, "--distributed-executor-backend", "ray")
    if backend != "ray":
        fail(f"fake vllm: only the ray executor is faked, not {backend}", 2)
    python = scenario().get("ray_python")
    if not python:
        fail("fake vllm: the test installed no real Ray (scenario ray_python)", 1)
    tensor = int(_flag(args, "--tensor-parallel-size", "1"))
    pipeline = int(_flag(args, "--pipeline-parallel-size", "1"))
    driver = subprocess.Popen(
        [python, str(DRIVER), str(tensor * pipeline)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert driver.stdout is not None
    for line in driver.stdout:
        if line.strip() == "READY":
            break
    else:
        fail(f"fake vllm: the Ray executor failed (exit code {driver.wait()})", 1)
    print(f"fake vllm: {tensor * pipeline} GPUs reserved on the Ray cluster", flush=True)

    def watch() -> None:
        code = driver.wait()
        sys.stderr.write(f"fake vllm: the Ray executor exited ({code}): the engine dies\n")
        sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
