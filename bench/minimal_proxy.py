"""The smallest useful proxy (raw ASGI + aiohttp), the ceiling the real proxy is compared to.

    python -m uvicorn minimal_proxy:app --app-dir bench --port P --loop uvloop --http httptools
    (UPSTREAM=http://127.0.0.1:PORT of the fake Ollama)

It translates one non-streamed chat request to /api/chat and back, with no validation,
auth, routing, metrics or error handling: what is left is the cost of uvicorn, aiohttp and
two JSON round trips, so "proxy / minimal" shows what the real proxy's features cost.
"""

import json
import os

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:11434")
state = {}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            else:
                await state["session"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body)
    native = {"model": request["model"], "messages": request["messages"], "stream": False}
    async with state["session"].post(UPSTREAM + "/api/chat", data=json.dumps(native)) as reply:
        answer = json.loads(await reply.read())
    out = json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": request["model"],
            "choices": [{"index": 0, "message": answer["message"], "finish_reason": "stop"}],
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})
