"""Writing /v1 answers on raw ASGI: plain bodies and OpenAI-shaped errors ({"error": {message, type, param, code}})."""
from __future__ import annotations

import orjson

from ..errors import ApiError

JSON = b"application/json"


async def send_bytes(send, status: int, body: bytes, content_type: bytes = JSON, headers=()) -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, status: int, obj, headers=()) -> None:
    await send_bytes(send, status, orjson.dumps(obj), JSON, headers)


def error_headers(err: ApiError) -> list:
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in err.headers.items()]


async def send_error(send, err: ApiError, headers=()) -> None:
    """The error body plus `headers` (the routing headers) plus the error's own (Retry-After, x-should-retry)."""
    h = list(headers)
    h.extend(error_headers(err))
    await send_bytes(send, err.status, orjson.dumps(err.body()), JSON, h)
