"""The edge, before any route: who may send a body, and how much of one.

A pure ASGI middleware. On the API's authenticated routes a request without a valid bearer
token is answered 401 before its body is read (FastAPI would parse the JSON body before it
ran the route's auth dependency). Then every body is capped: a declared `Content-Length`
over the cap is answered 413 before one byte is read; a chunked (or lying) body is read up
to the cap and answered 413 the moment it passes it. What fits is handed to the route
unchanged. Webhooks authenticate by the gateway's signature, over the body, in their route.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import REFUSED, bearer, verify_token

MAX_BODY = 256 * 1024
TOO_LARGE = f"body over {MAX_BODY // 1024} KiB"


PUBLIC = ("/api/v1/webhooks/", "/api/v1/healthz", "/api/v1/readyz", "/api/v1/metrics")
OPEN_PAGES = ("/api/v1/vendor",)  # exact paths: a page anyone may fetch (its data needs a token)


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        path: str = scope.get("path", "")
        if path.startswith("/api/v1/") and not path.startswith(PUBLIC) and path not in OPEN_PAGES:
            token = bearer(headers.get(b"authorization", b"").decode("latin-1"))
            secret = scope["app"].state.deps.settings.jwt_secret
            claims = None if token is None else verify_token(secret, token)
            if claims is None:
                await _answer(send, 401, REFUSED, [(b"www-authenticate", b"Bearer")])
                return
            scope.setdefault("state", {})["claims"] = claims  # the route's caller, decoded once
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _answer(send, 413, TOO_LARGE)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _answer(send, 413, TOO_LARGE)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as servers do

        await self.app(scope, replay, send)


async def _answer(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
