"""A stand-in for the head's Ray dashboard: `GET /api/v0/nodes` in the shape Ray 2.60 answers
(captured from `ray start --head` with RAY_AUTH_MODE=token: ray/dashboard/modules/state/
state_head.py), refusing a request without the cluster's token with 403 as Ray does
("Unauthorized: Missing authentication token" without one)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


def node(name: str, *, alive: bool = True, gpus: int = 1, head: bool = False,
         services: str = "ray") -> dict[str, Any]:  # fmt: skip
    """One row of `result`, as Ray lists a node."""
    return {
        "node_id": f"{abs(hash(name)):056x}"[:56],
        "node_ip": name.split(":")[0],
        "is_head_node": head,
        "state": "ALIVE" if alive else "DEAD",
        "state_message": None
        if alive
        else "Terminated due to preemption: Node received SIGTERM; draining before shutdown.",
        "node_name": name,
        "resources_total": {"GPU": float(gpus), "CPU": 2.0, f"node:{name.split(':')[0]}": 1.0},
        "labels": {"ray.io/node-id": "x", "stackctl-services": services},
    }


def dashboard(token: str, nodes: list[dict[str, Any]]) -> Starlette:
    """The app; `nodes` is read at every request, so a test can change it in place."""

    async def list_nodes(request: Request):
        auth = request.headers.get("authorization", "")
        if not auth:
            return PlainTextResponse("Unauthorized: Missing authentication token", 401)
        if auth != f"Bearer {token}":
            return PlainTextResponse("Forbidden: Invalid authentication token", 403)
        result = {"total": len(nodes), "num_after_truncation": len(nodes),
                  "num_filtered": len(nodes), "result": list(nodes)}  # fmt: skip
        body = {"result": True, "msg": "", "data": {"result": result}}
        return JSONResponse(body)

    return Starlette(routes=[Route("/api/v0/nodes", list_nodes)])
