"""SSEFilter: whole events forwarded as they complete; the usage-only chunk read and (optionally) dropped."""
from router_app.dispatch.sse import SSEFilter

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
DONE = b"data: [DONE]\n\n"


def feed_all(f, parts):
    return b"".join(f.feed(p) for p in parts) + f.flush()


def test_events_split_across_chunks_are_reassembled():
    f = SSEFilter(strip_usage=True)
    raw = CHUNK + USAGE + DONE
    out = feed_all(f, [raw[i:i + 7] for i in range(0, len(raw), 7)])
    assert out == CHUNK + DONE
    assert f.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_usage_kept_when_client_asked():
    f = SSEFilter(strip_usage=False)
    assert feed_all(f, [CHUNK, USAGE, DONE]) == CHUNK + USAGE + DONE
    assert f.usage["total_tokens"] == 5


def test_partial_event_is_held_until_complete():
    f = SSEFilter(strip_usage=True)
    assert f.feed(CHUNK[:10]) == b""
    assert f.feed(CHUNK[10:]) == CHUNK


def test_crlf_events_and_usage_on_a_choice_chunk():
    f = SSEFilter(strip_usage=True)
    ev = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":9}}\r\n\r\n'
    assert feed_all(f, [ev, b"data: [DONE]\r\n\r\n"]) == ev + b"data: [DONE]\r\n\r\n"   # not usage-only: kept
    assert f.usage == {"total_tokens": 9}


def test_null_usage_and_garbage_pass_through():
    f = SSEFilter(strip_usage=True)
    ev = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}\n\n'
    junk = b'data: {"usage": not json\n\n'
    assert feed_all(f, [ev, junk]) == ev + junk
    assert f.usage is None
