"""Streaming passthrough: chunks forwarded as they arrive, usage handling, failover before the first byte only."""
import json
import time

import httpx

from conftest import wait_for


def stream_req(text="tell me about rivers", **extra):
    return {"model": "homelab/auto", "stream": True, "messages": [{"role": "user", "content": text}], **extra}


def events(lines):
    return [l[6:] for l in lines if l.startswith("data: ")]


def test_first_chunk_reaches_client_before_upstream_finishes(client, engines):
    mouth = engines["mouth"]
    mouth.hold()                              # the engine sends its first chunk, then waits
    with client.stream("POST", "/v1/chat/completions", json=stream_req()) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-homelab-route"] == "mouth"
        it = r.iter_lines()
        first = next(l for l in it if l.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
        assert mouth.finished_streams == 0     # the upstream has not finished yet
        mouth.release()
        rest = events(list(it))
    assert rest[-1] == "[DONE]"
    assert mouth.finished_streams == 1


def test_chunks_arrive_spread_over_time(client, engines):
    engines["mouth"].chunk_delay_s = 0.15
    engines["mouth"].stream_chunks = 3
    times = []
    with client.stream("POST", "/v1/chat/completions", json=stream_req()) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                times.append(time.perf_counter())
    assert len(times) == 6                    # role + 3 content + stop + [DONE]
    assert times[3] - times[0] > 0.3          # not buffered until the end


def test_usage_chunk_stripped_unless_asked(client, engines):
    with client.stream("POST", "/v1/chat/completions", json=stream_req()) as r:
        evs = events(list(r.iter_lines()))
    assert engines["mouth"].requests[-1]["stream_options"] == {"include_usage": True}   # asked upstream
    assert not any('"usage"' in e for e in evs)                                         # hidden from client
    assert evs[-1] == "[DONE]"
    with client.stream("POST", "/v1/chat/completions",
                       json=stream_req(stream_options={"include_usage": True})) as r:
        evs = events(list(r.iter_lines()))
    usage = [json.loads(e) for e in evs if '"usage"' in e]
    assert usage and usage[0]["choices"] == [] and usage[0]["usage"]["total_tokens"] == 8


def test_route_without_stream_usage_is_left_alone(make_router, engines):
    def mutate(cfg):
        cfg["routes"]["mouth"]["stream_usage"] = False
    router = make_router(mutate)
    with httpx.Client(base_url=router.url, timeout=10) as c:
        with c.stream("POST", "/v1/chat/completions", json=stream_req()) as r:
            list(r.iter_lines())
    assert "stream_options" not in engines["mouth"].requests[-1]


def test_stream_fails_over_before_the_first_byte(client, engines):
    engines["mouth"].mode = "fail500"
    with client.stream("POST", "/v1/chat/completions", json=stream_req()) as r:
        assert r.status_code == 200
        assert (r.headers["x-homelab-route"], r.headers["x-homelab-reason"]) == ("brain", "mouth_down")
        evs = events(list(r.iter_lines()))
    assert "brain-0" in "".join(evs) and evs[-1] == "[DONE]"


def test_stream_4xx_passes_through(client, engines):
    engines["mouth"].mode = "fail400"
    r = client.post("/v1/chat/completions", json=stream_req())
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_broken_stream_is_not_retried(client, engines, router):
    mouth = engines["mouth"]
    mouth.hold()
    with client.stream("POST", "/v1/chat/completions", json=stream_req()) as r:
        it = r.iter_lines()
        next(l for l in it if l.startswith("data: "))
        mouth.stop()                       # the engine dies mid-stream
        rest = list(it)
    assert not engines["brain"].requests   # nothing retried after the first byte
    assert any("upstream_stream_broken" in l for l in rest)
    mouth.start()


def test_client_disconnect_releases_the_slot(client, engines, router):
    mouth = engines["mouth"]
    mouth.hold()
    with client.stream("POST", "/v1/chat/completions", json=stream_req()) as r:
        it = r.iter_lines()
        assert next(it).startswith("data: ")
        assert router.app.runtime.states["mouth"].in_flight == 1
    # the client closed the stream early
    wait_for(lambda: router.app.runtime.states["mouth"].in_flight == 0, what="slot released")
    mouth.release()
