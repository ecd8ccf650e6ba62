#!/usr/bin/env python3
"""Benchmark the proxy against calling the fake Ollama directly, in alternating rounds.

    python bench/proxy_bench.py [--rounds 3] [--seconds 5] [--markdown] [--compare DIR] [--pin]

Starts bench/fake_ollama.js (Node, so the fake is never the bottleneck) and
`python -m stackctl proxy serve` in front of it, then runs wrk against each, direct and via
the proxy alternately, and prints each figure with its ratio and the target:

  added p50 latency at concurrency 1      <= 0.5 ms
  non-streamed requests/s at 32            >= 4,000
  relayed stream chunks/s                  >= 25,000
  /v1/messages, /v1/responses streams      >= 0.9x chat's chunks/s (same rounds)
  proxy RSS after the load                 <= 60 MiB
  serving after start (hyperfine)          <= 1 s

Then it measures the proxy's peak and settled RSS under two loads (bench/memory_load.py):
8 bodies of 31 MiB of tiny JSON items at once, and 1,000 streams 200 at a time.

With `--compare DIR` (another checkout of stackctl, e.g. a `git worktree` of main), a second
proxy runs that checkout's code in the same rounds, alternating with this one, so a change
is measured against its base on the same machine at the same moment (each of the base's runs
right after the same run of this checkout); the proxies' CPU time
per request and per stream chunk is reported too, the measure a busy machine disturbs least.
With `--pin`, the proxies run on the last CPU and wrk and the fake on the others, so the load
generator does not steal the proxies' core (on 2 cores the spread between rounds falls from
about 20% to about 3%).

Installs wrk and hyperfine with apt-get when they are missing (root, Debian). Only loopback
addresses are used; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import memory_load  # noqa: E402  (bench/ is not a package)

STREAM_CHUNKS = 1000  # chunks per streamed request (max_tokens / num_predict in the scripts)
TARGETS = {
    "added_p50_ms": 0.5,
    "rps_c32": 4000,
    "chunks_per_s": 25000,
    "dialect_share": 0.9,  # the agents' routes keep this share of chat's stream throughput
    "rss_mib": 60,
    "serving_s": 1.0,
}


def need_tools() -> None:
    missing = [t for t in ("wrk", "hyperfine") if shutil.which(t) is None]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    if shutil.which("node") is None:
        sys.exit("node is needed for the fake Ollama (apt-get install nodejs)")


def pin_cpus() -> Callable[[], None] | None:
    """Keep the servers measured and the load apart: this process (so wrk and the fake it
    starts) on all CPUs but the last, and the returned function, run in each proxy's child
    process, puts it on the last. On 2 cores this halves the round-to-round spread. None
    (no pinning) on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    server = {cpus[-1]}
    os.sched_setaffinity(0, set(cpus[:-1]))
    return lambda: os.sched_setaffinity(0, server)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, script: str, connections: int, seconds: int, pid: int | None = None
) -> dict[str, float]:
    """One wrk run: requests/s and p50; given the server's `pid`, its CPU us per request too.

    CPU per request is what a change costs whatever else the machine is doing: requests/s
    under a shared machine's load swings by 2x from one run to the next, CPU time hardly.
    """
    threads = min(2, connections)
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(HERE / "wrk" / script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk saw {errors.group(1)} error responses from {url}:\n{out}")
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)],
    }
    if pid:
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        result["cpu_us"] = (cpu_seconds(pid) - cpu_before) / max(requests, 1) * 1e6
    return result


rss_mib = memory_load.rss_mib


def serving_time(config: Path, port: int) -> float:
    """Median seconds from starting `stackctl proxy serve` to its first /v1/models 200."""
    probe = HERE / "time_to_serve.py"
    export = Path(tempfile.mkdtemp()) / "hyperfine.json"
    subprocess.run(
        ["hyperfine", "--runs", "5", "--warmup", "1", "--export-json", str(export),
         f"{sys.executable} {probe} {config} {port}"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return json.loads(export.read_text())["results"][0]["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--compare", type=Path, help="another stackctl checkout to measure too")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run the proxies on the last CPU, wrk and the fake on the others (steadier figures)",
    )
    args = parser.parse_args()
    need_tools()
    on_server_cpu = pin_cpus() if args.pin else None
    fake_port, proxy_port, minimal_port = free_port(), free_port(), free_port()
    base_port = free_port()
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    config = work / "stack.yaml"
    config.write_text(
        f"backend: ollama\nproxy:\n  port: {proxy_port}\n  connections:\n"
        f"    - {{name: ollama, mode: ollama, base_url: 'http://127.0.0.1:{fake_port}'}}\n"
    )
    env = {**os.environ, "STACKCTL_HOME": str(work)}
    fake = subprocess.Popen(
        ["node", str(HERE / "fake_ollama.js"), str(fake_port)], stdout=subprocess.DEVNULL
    )
    proxy = minimal = base = None
    try:
        wait_http(f"http://127.0.0.1:{fake_port}/api/tags")
        serving = serving_time(config, free_port())
        proxy = subprocess.Popen(
            [sys.executable, "-m", "stackctl", "--config", str(config), "proxy", "serve"],
            stdout=subprocess.DEVNULL,
            env=env,
            preexec_fn=on_server_cpu,
        )
        wait_http(f"http://127.0.0.1:{proxy_port}/v1/models")
        if args.compare:
            base = subprocess.Popen(
                [sys.executable, "-m", "stackctl", "--config", str(config), "proxy", "serve",
                 "--port", str(base_port)],
                stdout=subprocess.DEVNULL,
                env={**env, "PYTHONPATH": str(args.compare.resolve())},
                cwd=args.compare,
                preexec_fn=on_server_cpu,
            )  # fmt: skip
            wait_http(f"http://127.0.0.1:{base_port}/v1/models")
        minimal = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "minimal_proxy:app", "--app-dir", str(HERE),
             "--port", str(minimal_port), "--loop", "uvloop", "--http", "httptools",
             "--log-level", "warning", "--no-access-log"],
            env={**env, "UPSTREAM": f"http://127.0.0.1:{fake_port}"},
            preexec_fn=on_server_cpu,
        )  # fmt: skip
        time.sleep(1.0)
        direct = f"http://127.0.0.1:{fake_port}/api/chat"
        via = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        wrk(via, "proxy_chat.lua", 8, 2)  # warm up both sides
        wrk(direct, "direct_chat.lua", 8, 1)
        minimal_url = f"http://127.0.0.1:{minimal_port}/v1/chat/completions"
        base_url = f"http://127.0.0.1:{base_port}/v1/chat/completions"
        keys = ("d_p50", "p_p50", "m_p50", "d_rps", "p_rps", "m_rps", "d_chunks", "p_chunks",
                "msg_chunks", "resp_chunks", "p_cpu", "p_chunk_cpu")  # fmt: skip
        messages_url = f"http://127.0.0.1:{proxy_port}/v1/messages"
        responses_url = f"http://127.0.0.1:{proxy_port}/v1/responses"
        if base is not None:
            wrk(base_url, "proxy_chat.lua", 8, 2)
            keys += ("b_p50", "b_rps", "b_chunks", "b_cpu", "b_chunk_cpu")
        runs: dict[str, list[float]] = {k: [] for k in keys}
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}/{args.rounds} ...", flush=True)
            runs["d_p50"].append(wrk(direct, "direct_chat.lua", 1, args.seconds)["p50_ms"])
            runs["p_p50"].append(wrk(via, "proxy_chat.lua", 1, args.seconds)["p50_ms"])
            if base is not None:  # the compared checkout right after each of this one's runs
                runs["b_p50"].append(wrk(base_url, "proxy_chat.lua", 1, args.seconds)["p50_ms"])
            runs["m_p50"].append(wrk(minimal_url, "proxy_chat.lua", 1, args.seconds)["p50_ms"])
            runs["d_rps"].append(wrk(direct, "direct_chat.lua", 32, args.seconds)["rps"])
            run = wrk(via, "proxy_chat.lua", 32, args.seconds, proxy.pid)
            runs["p_rps"].append(run["rps"])
            runs["p_cpu"].append(run["cpu_us"])
            if base is not None:
                run = wrk(base_url, "proxy_chat.lua", 32, args.seconds, base.pid)
                runs["b_rps"].append(run["rps"])
                runs["b_cpu"].append(run["cpu_us"])
            runs["m_rps"].append(wrk(minimal_url, "proxy_chat.lua", 32, args.seconds)["rps"])
            runs["d_chunks"].append(
                wrk(direct, "direct_stream.lua", 8, args.seconds)["rps"] * STREAM_CHUNKS
            )
            run = wrk(via, "proxy_stream.lua", 8, args.seconds, proxy.pid)
            runs["p_chunks"].append(run["rps"] * STREAM_CHUNKS)
            runs["p_chunk_cpu"].append(run["cpu_us"] / STREAM_CHUNKS)
            if base is not None:
                run = wrk(base_url, "proxy_stream.lua", 8, args.seconds, base.pid)
                runs["b_chunks"].append(run["rps"] * STREAM_CHUNKS)
                runs["b_chunk_cpu"].append(run["cpu_us"] / STREAM_CHUNKS)
            runs["msg_chunks"].append(
                wrk(messages_url, "proxy_messages_stream.lua", 8, args.seconds)["rps"]
                * STREAM_CHUNKS
            )
            runs["resp_chunks"].append(
                wrk(responses_url, "proxy_responses_stream.lua", 8, args.seconds)["rps"]
                * STREAM_CHUNKS
            )
        rss = rss_mib(proxy.pid)
        memory = {}
        for name, process, url in (("this", proxy, via), ("base", base, base_url)):
            if process is not None:
                print(f"memory loads ({name}) ...", flush=True)
                memory[name] = {
                    load: memory_load.measure(process.pid, load, url)
                    for load in ("many streams", "large bodies")
                }
    finally:
        for process in (proxy, base, minimal, fake):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
    med = {k: statistics.median(v) for k, v in runs.items()}
    added = med["p_p50"] - med["d_p50"]
    rows = [
        ("p50 latency, concurrency 1", f"{med['d_p50']:.3f} ms", f"{med['p_p50']:.3f} ms",
         f"+{added:.3f} ms", f"<= +{TARGETS['added_p50_ms']} ms", added <= TARGETS["added_p50_ms"]),
        ("requests/s, concurrency 32", f"{med['d_rps']:,.0f}", f"{med['p_rps']:,.0f}",
         f"{med['p_rps'] / med['d_rps']:.2f}x direct", f">= {TARGETS['rps_c32']:,}", med["p_rps"] >= TARGETS["rps_c32"]),
        ("stream chunks/s, 8 streams", f"{med['d_chunks']:,.0f}", f"{med['p_chunks']:,.0f}",
         f"{med['p_chunks'] / med['d_chunks']:.2f}x direct", f">= {TARGETS['chunks_per_s']:,}", med["p_chunks"] >= TARGETS["chunks_per_s"]),
        *[(f"{name} stream chunks/s", "", f"{med[key]:,.0f}", f"{med[key] / med['p_chunks']:.2f}x chat",
           f">= {TARGETS['dialect_share']}x chat", med[key] >= TARGETS["dialect_share"] * med["p_chunks"])
          for name, key in (("/v1/messages", "msg_chunks"), ("/v1/responses", "resp_chunks"))],
        ("proxy RSS after the load", "", f"{rss:.1f} MiB", "", f"<= {TARGETS['rss_mib']} MiB", rss <= TARGETS["rss_mib"]),
        ("serving after start", "", f"{serving:.3f} s", "", f"<= {TARGETS['serving_s']} s", serving <= TARGETS["serving_s"]),
    ]  # fmt: skip
    print(
        f"\nminimal aiohttp proxy (bench/minimal_proxy.py), same rounds: p50 {med['m_p50']:.3f} ms "
        f"(+{med['m_p50'] - med['d_p50']:.3f} ms), {med['m_rps']:,.0f} req/s at 32; "
        f"the proxy keeps {med['p_rps'] / med['m_rps']:.2f}x of its requests/s"
    )
    print(
        f"\nmedian of {args.rounds} alternating rounds of {args.seconds} s each (wrk), {os.cpu_count()} cores"
    )
    if args.markdown:
        print(
            "\n| measure | direct | via proxy | ratio | target | met |\n|---|---|---|---|---|---|"
        )
        for name, d, p, r, t, ok in rows:
            print(f"| {name} | {d} | {p} | {r} | {t} | {'yes' if ok else 'no'} |")
    else:
        for name, d, p, r, t, ok in rows:
            print(
                f"{name:28s} {d:>12s} {p:>12s} {r:>16s}   target {t:14s} {'met' if ok else 'NOT MET'}"
            )
    print("raw rounds:", json.dumps({k: [round(x, 3) for x in v] for k, v in runs.items()}))
    print_memory(memory)
    if base is not None:
        print(f"\n{args.compare} (base) against this checkout, same rounds:")
        print("| measure | base | this checkout | change |\n|---|---|---|---|")
        for name, key, unit in (
            ("p50 latency, concurrency 1", "p50", "ms"),
            ("requests/s, concurrency 32", "rps", ""),
            ("stream chunks/s, 8 streams", "chunks", ""),
            ("proxy CPU per request, concurrency 32", "cpu", "us"),
            ("proxy CPU per stream chunk", "chunk_cpu", "us"),
        ):
            old, new = med[f"b_{key}"], med[f"p_{key}"]
            print(f"| {name} | {old:,.3f} {unit} | {new:,.3f} {unit} | {new / old - 1:+.1%} |")


def print_memory(memory: dict) -> None:
    """The RSS table: peak and settled under each load, for each proxy measured."""
    print("\n| proxy | load | RSS before | peak | settled (3 s after) | took | statuses |")
    print("|---|---|---|---|---|---|---|")
    for name, loads in memory.items():
        for load, m in loads.items():
            print(
                f"| {name} | {load} | {m['before']:.1f} MiB | {m['peak']:.1f} MiB | "
                f"{m['settled']:.1f} MiB | {m['seconds']:.1f} s | {m['statuses']} |"
            )


if __name__ == "__main__":
    main()
