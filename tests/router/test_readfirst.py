"""router_app/ops/readfirst.py: an early answer waits for the request body's end, within its limits.

ASGI messages as uvicorn gives them (https://asgi.readthedocs.io/en/latest/specs/www.html: http.request with
more_body, http.disconnect); the end-to-end case behind the real Caddy is in tests/hub/test_connection_endings.py.
"""
from __future__ import annotations

import asyncio
import time

from router_app.ops import readfirst


class Client:
    """The body as chunks (None: the client stalls there; "gone": it disconnects), and what the app sent."""

    def __init__(self, chunks, content_length=None):
        self.chunks = list(chunks)
        self.calls = 0
        self.sent: list = []
        self.scope = {"type": "http", "headers": [] if content_length is None
                      else [(b"content-length", str(content_length).encode())]}

    async def receive(self):
        self.calls += 1
        if not self.chunks:
            await asyncio.sleep(3600)
        c = self.chunks.pop(0)
        if c is None:
            await asyncio.sleep(3600)
        if c == "gone":
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": c, "more_body": bool(self.chunks)}

    async def send(self, msg):
        self.sent.append((time.monotonic(), msg))


def _answer_unread(client, limit=1000, idle_s=5.0, max_s=5.0):
    """An app that answers 401 without reading the body -> (start message, seconds until it was sent)."""
    async def run():
        recv, snd = readfirst.wrap(client.scope, client.receive, client.send, limit, idle_s, max_s)
        t0 = time.monotonic()
        await snd({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]})
        await snd({"type": "http.response.body", "body": b"{}"})
        return client.sent[0][1], client.sent[0][0] - t0
    return asyncio.run(run())


def test_the_answer_waits_until_the_body_is_read():
    c = Client([b"a" * 100, b"b" * 100, b"c" * 100], content_length=300)
    start, _ = _answer_unread(c)
    assert c.chunks == [] and c.calls == 3                     # every chunk was read before the answer went out
    assert start["status"] == 401 and (b"connection", b"close") not in start["headers"]
    assert [m["type"] for _, m in c.sent] == ["http.response.start", "http.response.body"]


def test_a_declared_body_over_the_limit_is_not_read():
    c = Client([b"a" * 100], content_length=5000)
    start, took = _answer_unread(c, limit=1000)
    assert c.calls == 0 and took < 0.5
    assert (b"connection", b"close") in start["headers"]      # the connection ends with this answer


def test_a_body_that_grows_over_the_limit_stops_the_read():
    c = Client([b"a" * 600, b"b" * 600, b"c" * 600, b"d"])
    start, _ = _answer_unread(c, limit=1000)
    assert c.calls == 2 and (b"connection", b"close") in start["headers"]


def test_a_stalled_client_gets_its_answer_after_a_pause():
    c = Client([b"a" * 10, None], content_length=100)
    start, took = _answer_unread(c, idle_s=0.3)
    assert 0.2 < took < 2.0 and (b"connection", b"close") in start["headers"]


def test_a_trickling_client_gets_its_answer_at_the_deadline():
    class Trickle(Client):
        async def receive(self):
            self.calls += 1
            await asyncio.sleep(0.1)          # a byte now and then, never a pause long enough to stop the read
            return {"type": "http.request", "body": b"a", "more_body": True}
    c = Trickle([], content_length=100)
    start, took = _answer_unread(c, idle_s=0.3, max_s=0.8)
    assert 0.7 < took < 2.0 and c.calls >= 5 and (b"connection", b"close") in start["headers"]


def test_a_client_that_leaves_ends_the_wait():
    c = Client([b"a" * 10, "gone"], content_length=100)
    start, took = _answer_unread(c)
    assert took < 0.5 and start["status"] == 401


def test_a_body_the_app_read_costs_no_further_read():
    async def run():
        c = Client([b"x" * 50, b"y" * 50], content_length=100)
        recv, snd = readfirst.wrap(c.scope, c.receive, c.send, 1000)
        while (await recv())["more_body"]:
            pass
        calls = c.calls
        await snd({"type": "http.response.start", "status": 200, "headers": []})
        await snd({"type": "http.response.body", "body": b"ok"})
        return c, calls
    c, calls = asyncio.run(run())
    assert c.calls == calls == 2 and (b"connection", b"close") not in c.sent[0][1]["headers"]


def test_what_the_app_read_counts_against_the_limit():
    """A 413 after the app itself read past the limit is not followed by another full read."""
    async def run():
        c = Client([b"a" * 800, b"b" * 800, b"c" * 800, b"d"])
        recv, snd = readfirst.wrap(c.scope, c.receive, c.send, 1000)
        await recv()
        await recv()                          # 1600 bytes: over the limit, the app answers 413
        await snd({"type": "http.response.start", "status": 413, "headers": []})
        return c
    c = asyncio.run(run())
    assert c.calls == 2 and (b"connection", b"close") in c.sent[0][1]["headers"]
