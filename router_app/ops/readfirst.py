"""An answer starts only after the request body has been read to its end (a bounded read).

The router answers some requests on their headers alone: 401 for a missing or unknown key, 404/405, the hub's and
the MCP bridge's 401s. A client that is still sending its body then writes into a connection the router closes
after the answer (`Connection: close`, as Caddy sends it). Behind Caddy that write fails, and Caddy's transport
drops the upstream connection with the answer unread: a 10 MB body with a bad key came back as a 502, not a 401
(tests/hub/test_connection_endings.py). So `wrap()` holds the response's first message until the rest of the body
has been received and dropped:

* at most `limit` bytes (the router's max_body_bytes): a larger body, by Content-Length or as it arrives, is not
  read on; the answer goes out at once with `Connection: close`;
* while bytes keep coming: a pause of IDLE_S, or MAX_S since the request began, ends the wait, and the answer goes
  out with `Connection: close` (an unauthenticated client that announces 30 MB and sends 10 bytes still has its
  401 within a moment; a body Caddy buffered arrives at loopback speed);
* a request whose body the app has read itself (every request that gets past authentication) costs a flag test.
"""
from __future__ import annotations

import asyncio
import time

IDLE_S = 0.5        # the longest pause between two pieces of a body being read for an early answer
MAX_S = 5.0         # the longest such a read takes, from the request's start


def _content_length(scope) -> int | None:
    for k, v in scope["headers"]:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


def wrap(scope, receive, send, limit: int, idle_s: float = IDLE_S, max_s: float = MAX_S):
    """-> (receive, send) for an HTTP scope: `send` reads the unread body to its end before the response starts.
    The limits count from the request's start and include what the app read itself (a 413 or a 408 from the app
    is not followed by another full read)."""
    state = {"done": False, "seen": 0, "deadline": time.monotonic() + max_s, "idle_s": idle_s}

    async def recv():
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body", False):
            state["done"] = True
        else:
            state["seen"] += len(msg.get("body", b""))
        return msg

    async def snd(msg):
        if not state["done"] and msg["type"] == "http.response.start":
            state["done"] = True
            if not await _drain(scope, receive, limit, state):
                msg = dict(msg, headers=[*msg.get("headers", ()), (b"connection", b"close")])
        await send(msg)

    return recv, snd


async def _drain(scope, receive, limit: int, state: dict) -> bool:
    """Reads and drops the rest of the request body -> True when it ended within `limit` bytes and the deadline."""
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        return False
    seen = state["seen"]
    while seen <= limit:
        left = min(state["deadline"] - time.monotonic(), state["idle_s"])
        if left <= 0:
            return False
        try:
            msg = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return False
        if msg["type"] != "http.request":
            return True                      # the client left: nothing to protect
        seen += len(msg.get("body", b""))
        if not msg.get("more_body", False):
            return True
    return False
