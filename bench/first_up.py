#!/usr/bin/env python3
"""Time a first `stackctl up` end to end, next to a bare `pip install open-webui`, in one run.

    python bench/first_up.py --work DIR [--pull-seconds 60] [--model gemma3:12b]

Runs, one after the other, each from cold caches:

1. up:   `stackctl up --yes` of an Ollama stack in a fresh home: a fake Ollama (its models
         pull at once), the real Open WebUI install (uv, empty UV_CACHE_DIR) and start, under
         a real systemd user manager (tests/systemd_user.py: needs root and systemd);
2. up + download: the same with a model-download stand-in, a fake /api/pull that streams the
         model's bytes at a fixed rate for --pull-seconds;
3. pip:  `python -m venv` + `pip install --no-cache-dir open-webui` (the baseline).

It prints each wall time, the steps' own times, and the ratios the targets are about
(bench/README.md). Open WebUI venvs are several GB: DIR must have room (~15 GB) and should
not be /tmp; everything the bench made there is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/conftest imports systemd_user

from stackctl.probe_tools import find_venv_python  # noqa: E402
from tests.fakes.installer import install_fakes  # noqa: E402
from tests.ports import free_ports  # noqa: E402
from tests.systemd_user import _start_manager, _stop_manager  # noqa: E402


def timed(argv: list[str], *, env: dict[str, str] | None = None, log: Path) -> float:
    """Run a command to completion, its output into `log`; its wall time in seconds."""
    started = time.monotonic()
    with open(log, "w") as out:
        done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        sys.exit(f"{' '.join(argv)} failed (exit {done.returncode}), see {log}:\n{tail}")
    return took


def pip_baseline(work: Path, python: str) -> float:
    venv = work / "pip-venv"
    shutil.rmtree(venv, ignore_errors=True)
    try:
        took = timed([python, "-m", "venv", str(venv)], log=work / "pip-venv.log")
        took += timed(
            [str(venv / "bin/pip"), "install", "--no-cache-dir", "open-webui"],
            log=work / "pip-install.log",
        )
        if not (venv / "bin/open-webui").exists():
            sys.exit("pip install open-webui left no open-webui script")
        return took
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def first_up(work: Path, name: str, model: str, pull_seconds: float) -> tuple[float, str]:
    """One first `up` in a fresh home and cold caches; (wall time, its output)."""
    base = work / name
    shutil.rmtree(base, ignore_errors=True)
    manager = _start_manager(base / "systemd")
    fakes = install_fakes(base / "fakes", names=["ollama", "loginctl"])
    fakes.scenario(linger="yes")
    ollama_state = fakes.state / "ollama"
    ollama_state.mkdir(parents=True, exist_ok=True)
    (ollama_state / "behaviour.json").write_text(json.dumps({"pull_seconds": pull_seconds}))
    home = manager.home
    ollama, proxy, webui = free_ports(3)
    config = home / ".config/stackctl/stack.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'models: ["{model}"]\nollama: {{port: {ollama}}}\nproxy: {{port: {proxy}}}\n'
        f"openwebui: {{port: {webui}}}\n"
    )
    env = {
        **manager.env(),  # os.environ and the variables that reach the user manager
        "PATH": f"{fakes.bin}:{manager.shim_dir}:{os.environ['PATH']}",
        "STACKCTL_HOME": str(home),
        "STACKCTL_AS_ROOT": "0",
        "UV_CACHE_DIR": str(base / "uv-cache"),  # cold: nothing downloaded before
    }
    stackctl = [sys.executable, "-m", "stackctl"]
    try:
        took = timed([*stackctl, "up", "--yes"], env=env, log=base / "up.log")
        output = (base / "up.log").read_text()
        status = subprocess.run(
            [*stackctl, "status", "--json"], env=env, capture_output=True, text=True, check=False
        )
        if not json.loads(status.stdout or "{}").get("healthy"):
            sys.exit(f"the stack is not healthy after up:\n{status.stdout}{status.stderr}")
        subprocess.run([*stackctl, "down", "--purge", "--yes"], env=env, capture_output=True)
        return took, output
    finally:
        _stop_manager(manager)
        shutil.rmtree(base, ignore_errors=True)


def step_times(output: str) -> list[tuple[str, str]]:
    """(step, its time) from up's output: `[5/9] Pull ...` then `done (1.2s)` lines."""
    names: dict[str, str] = {}
    last = ""
    times = []
    for line in output.splitlines():
        header = re.match(r"^\[(\d+)/\d+\] (.+)$", line)
        if header:
            last = header.group(1)
            names[last] = header.group(2)
            continue
        done = re.match(r"^ +(?:\[(\d+)/\d+\] )?done \(([\d.]+)s\)$", line)
        if done:
            number = done.group(1) or last
            times.append((names.get(number, "?"), done.group(2) + " s"))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a roomy directory (not /tmp)")
    parser.add_argument("--pull-seconds", type=float, default=60.0)
    parser.add_argument("--model", default="gemma3:12b")
    parser.add_argument(
        "--only",
        choices=["up", "up-pull", "pip"],
        action="append",
        help="run only these measures (repeatable; default: all three)",
    )
    args = parser.parse_args()
    wanted = set(args.only or ["up", "up-pull", "pip"])
    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    python = find_venv_python(None)
    if python is None:
        sys.exit("no Python 3.11 or 3.12 for the pip baseline")
    print(f"Python for both installs: {python}; work dir {work}", flush=True)

    # the two `up` runs first: they are what changes; the baseline follows in the same run
    results: dict[str, float] = {}
    for name, pull in (("up", 0.0), ("up-pull", args.pull_seconds)):
        if name not in wanted:
            continue
        results[name], output = first_up(work, name, args.model, pull)
        what = f"with a {pull:g} s model download" if pull else "(fake Ollama, real Open WebUI)"
        print(f"first up {what}: {results[name]:.1f} s", flush=True)
        for step, took in step_times(output):
            print(f"    {took:>8}  {step}", flush=True)
    if "pip" in wanted:
        results["pip"] = pip_baseline(work, python)
        print(f"pip: venv + pip install --no-cache-dir open-webui: {results['pip']:.1f} s")
    if len(results) < 3:
        return
    pip_seconds, up_seconds, pull_seconds = results["pip"], results["up"], results["up-pull"]

    print()
    print("| measure | time | ratio |")
    print("|---|---|---|")
    print(f"| `pip install open-webui` (venv + install, no cache) | {pip_seconds:.1f} s | 1.00x |")
    print(f"| first `stackctl up` | {up_seconds:.1f} s | {up_seconds / pip_seconds:.2f}x |")
    grew = pull_seconds - up_seconds
    print(
        f"| first `stackctl up` + {args.pull_seconds:g} s model download | {pull_seconds:.1f} s "
        f"| +{grew:.1f} s for the download ({grew / args.pull_seconds:.0%} of it) |"
    )


if __name__ == "__main__":
    main()
