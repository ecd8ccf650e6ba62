"""The Ray Serve application in front of a cluster's Ollamas (issue 12): one replica per node,
each forwarding to its own node's Ollama; Ray Serve routes, checks health and replaces
replicas that fail.

This file runs under the Ray venv's Python on the head, as a script (the `ray-serve` unit):

    python ollama_app.py --address 10.0.0.5:6379 --nodes 2 --port 11500

It imports nothing from stackctl (the Ray venv does not have it, and stackctl's CLI never
imports this file), so Ray pickles the deployment by value from `__main__` and the workers
need no copy of it. It waits until `--nodes` nodes are alive, starts Serve with its HTTP proxy
on the head only, bound to 127.0.0.1 (the stackctl proxy stays the only door for clients),
deploys the app and stays in the foreground; on SIGTERM it shuts Serve down.

Each replica forwards any request (Ollama's native API, /api/*) to the Ollama URL in
`STACKCTL_OLLAMA_URL`, which the node's `ray` unit sets: Ray's worker processes inherit the
raylet's environment, so a replica reads its own node's value. Answers pass through unaltered
as they arrive (NDJSON streams chunk by chunk, via Serve's StreamingResponse support).
`check_health` asks the node's Ollama for /api/version: a replica whose Ollama is down is
replaced, and the replacement keeps failing its first health check (Serve then retries it)
until that Ollama is back, while the other replicas take the traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

APP_NAME = "ollama"
URL_ENV = "STACKCTL_OLLAMA_URL"
DEFAULT_URL = "http://127.0.0.1:11434"
HEALTH_TIMEOUT = 5.0  # seconds a replica's Ollama may take to answer /api/version
# Serve's defaults are a check every 10 s with 30 s to answer (ray/serve/_private/constants.py):
# a dead Ollama would take traffic that long
HEALTH_CHECK_PERIOD_S = 2.0
HEALTH_CHECK_TIMEOUT_S = 10.0
# Serve's default of 5 requests at a time per replica would hold long streams back in Serve's
# proxy; Ollama queues what it cannot run yet itself (OLLAMA_MAX_QUEUE, 503 when full)
MAX_ONGOING_REQUESTS = 64
# How Serve's proxy picks a replica (env vars its router reads, ray/serve/_private/constants.py
# and request_router/request_router.py): by default it tries the replicas on its own node (the
# head's) first, and it answers from queue lengths it cached up to 10 s ago. Instead: every
# replica is a candidate, and each request asks its two candidates how busy they are (a small
# call with a 0.1 s deadline) and goes to the less busy one ("power of two choices"). Measured
# on a two-node cluster: 40 requests 8 at a time all went to the head's replica with the
# defaults, and 30/10 with these.
SERVE_ENV = {
    "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
    "RAY_SERVE_QUEUE_LENGTH_CACHE_TIMEOUT_S": "0",
}
FORWARDED_HEADERS = ("content-type", "accept")
NODES_WAIT_LOG_EVERY = 30.0  # seconds between "waiting for nodes" lines


class OllamaReplica:
    """One replica: forwards each HTTP request to this node's Ollama, streaming the answer."""

    def __init__(self) -> None:
        self.base_url = os.environ.get(URL_ENV, DEFAULT_URL).rstrip("/")
        self.session: Any = None

    def _session(self) -> Any:
        import aiohttp

        if self.session is None:  # created on the replica's event loop, on first use
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=HEALTH_TIMEOUT)
            )
        return self.session

    async def __call__(self, request: Any) -> Any:
        import aiohttp
        from starlette.responses import JSONResponse, StreamingResponse

        url = self.base_url + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        body = await request.body()
        try:
            upstream = await self._session().request(
                request.method, url, data=body or None, headers=headers
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return JSONResponse(
                {"error": f"Ollama at {self.base_url} did not answer: {exc}"}, status_code=502
            )
        return StreamingResponse(
            _relay(upstream),
            status_code=upstream.status,
            media_type=upstream.headers.get("Content-Type"),
        )

    async def check_health(self) -> None:
        """Raise unless this node's Ollama answers /api/version (Serve replaces the replica)."""
        import aiohttp

        try:
            async with self._session().get(
                self.base_url + "/api/version",
                timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT),
            ) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"Ollama at {self.base_url} answered {reply.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RuntimeError(f"Ollama at {self.base_url} did not answer: {exc}") from None


async def _relay(upstream: Any) -> AsyncIterator[bytes]:
    """The answer's bytes as they arrive; closing early (the client left) closes the
    connection to Ollama, which makes it stop generating."""
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.close()


def application(nodes: int) -> Any:
    """The Serve application: `nodes` replicas, at most one per node."""
    from ray import serve

    deployment = serve.deployment(
        OllamaReplica,
        name="OllamaReplica",
        num_replicas=nodes,
        max_replicas_per_node=1,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        health_check_period_s=HEALTH_CHECK_PERIOD_S,
        health_check_timeout_s=HEALTH_CHECK_TIMEOUT_S,
        ray_actor_options={"num_cpus": 0},  # forwarding is I/O: Ollama does the work
    )
    return deployment.bind()


def alive_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def wait_for_nodes(nodes: int) -> None:
    said = 0.0
    while (alive := alive_nodes()) < nodes:
        if time.monotonic() - said > NODES_WAIT_LOG_EVERY:
            print(f"waiting for {nodes} nodes in the cluster: {alive} so far", flush=True)
            said = time.monotonic()
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the head's HOST:PORT (Ray's GCS)")
    parser.add_argument("--nodes", type=int, required=True, help="replicas: one per node")
    parser.add_argument("--port", type=int, required=True, help="Serve's HTTP port")
    parser.add_argument("--host", default="127.0.0.1", help="Serve's HTTP address")
    args = parser.parse_args(argv)

    import ray
    from ray import serve

    ray.init(address=args.address, logging_level="warning")
    signal.signal(signal.SIGTERM, _stop)  # after ray.init, which sets a handler of its own
    started = False
    try:
        wait_for_nodes(args.nodes)
        serve.start(
            proxy_location="HeadOnly",  # the head's proxy only, where this script runs
            http_options={"host": args.host, "port": args.port},
            # the proxy inherits the controller's env (SERVE_ENV: spread the requests)
            controller_options={"runtime_env": {"env_vars": SERVE_ENV}},
        )
        started = True
        serve.run(application(args.nodes), name=APP_NAME, route_prefix="/")
        print(
            f"serving Ollama on http://{args.host}:{args.port} with {args.nodes} replicas",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except SystemExit:
        pass
    finally:
        if started:
            serve.shutdown()
        ray.shutdown()


def _stop(signum: int, frame: Any) -> None:
    """systemd's stop: leave the foreground loop, shutting Serve down on the way out."""
    raise SystemExit(0)


if __name__ == "__main__":
    main()
