"""Memory under load: the peak and settled RSS of a proxy process (used by proxy_bench.py).

Two loads, each measured by sampling the process's VmRSS (/proc/<pid>/status) every 10 ms
while it runs (the peak), then once more after 3 s of quiet (the settled figure):

- large bodies: 8 requests at once, each a 31 MiB chat body of tiny JSON items
  (`"tools": [{}, {}, ...]`), the shape that costs a JSON parser the most per byte;
- many streams: 1,000 streamed chats of 100 chunks, 200 at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

LARGE_BODY_MIB = 31
LARGE_BODIES = 8
STREAMS = 1000
STREAM_CONCURRENCY = 200


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def large_body() -> bytes:
    head = b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}], "tools": ['
    items = (LARGE_BODY_MIB * 1024 * 1024 - len(head)) // 3
    return head + b"{}," * items + b"{}]}"


async def _large_bodies(url: str) -> list[int]:
    import aiohttp

    body = large_body()
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as reply:
                await reply.read()
                return reply.status

        return await asyncio.gather(*(one() for _ in range(LARGE_BODIES)))


async def _many_streams(url: str) -> list[int]:
    import aiohttp

    body = (
        b'{"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hello"}],'
        b' "stream": true, "max_tokens": 100}'
    )
    limit = asyncio.Semaphore(STREAM_CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=STREAM_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with (
                limit,
                session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply,
            ):
                async for _ in reply.content.iter_any():
                    pass
                return reply.status

        return await asyncio.gather(*(one() for _ in range(STREAMS)))


def measure(pid: int, load: str, url: str) -> dict[str, float | list[int]]:
    """Run one load against the proxy at `url` (its process `pid`): peak and settled RSS."""
    samples = [rss_mib(pid)]
    running = True

    def sample() -> None:
        while running:
            samples.append(rss_mib(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    work = _large_bodies if load == "large bodies" else _many_streams
    statuses = asyncio.run(work(url))
    seconds = time.monotonic() - started
    running = False
    sampler.join()
    time.sleep(3)
    return {
        "before": samples[0],
        "peak": max(samples),
        "settled": rss_mib(pid),
        "seconds": seconds,
        "statuses": sorted(set(statuses)),
    }
