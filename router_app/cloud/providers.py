"""Provider kinds: what one attempt against a cloud route sends and how its answer is read.

  openai / openai_compatible  the OpenAI wire format as is: `Authorization: Bearer <key>`
                              (https://platform.openai.com/docs/api-reference/authentication)
  anthropic                   POST <url>/messages with `x-api-key` and `anthropic-version`
                              (https://docs.anthropic.com/en/api/overview), translated both ways
Provider faults are engine faults (router_app/dispatch/attempt.py): 5xx, timeouts and 429 (with its Retry-After,
https://docs.anthropic.com/en/api/rate-limits, https://platform.openai.com/docs/guides/rate-limits) fail over or
end in the router's OpenAI-shaped 503; a 401/403 means the router's key is wrong, never the client's.
"""
from __future__ import annotations

import email.utils
import time
from typing import Optional

import orjson

from ..errors import ApiError
from .anthropic_req import to_anthropic
from .anthropic_resp import to_chat_completion, to_openai_error
from .anthropic_sse import AnthropicStream


def auth_headers(route, key: Optional[str]) -> dict:
    """The provider's auth headers for a route (no header without a key)."""
    if getattr(route, "provider", None) == "anthropic":
        opts = route.cloud
        h = {"anthropic-version": opts.anthropic_version if opts else "2023-06-01"}
        if key:
            h["x-api-key"] = key
        return h
    return {"Authorization": "Bearer " + key} if key else {}


def retry_after_s(value: Optional[str], default: float) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); the default when absent or unreadable."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


class Hooks:
    """Per-route request/response adaptation; the OpenAI kinds pass everything through."""
    translate = False

    def __init__(self, route):
        self.route = route

    def url(self, base: str, path: str) -> str:
        return base + path

    def body(self, data: bytes, stream: bool) -> bytes:
        return data

    def stream(self, resp):
        return resp

    def answer(self, obj: dict) -> dict:
        return obj

    def error(self, body: bytes, status: int) -> bytes:
        return body


class AnthropicHooks(Hooks):
    translate = True

    def url(self, base: str, path: str) -> str:
        if path != "/chat/completions":
            raise ApiError(400, f"route '{self.route.model}' is an Anthropic route: it serves chat completions only",
                           code="unsupported_by_provider")
        return base + "/messages"

    def body(self, data: bytes, stream: bool) -> bytes:
        opts = self.route.cloud
        return orjson.dumps(to_anthropic(orjson.loads(data), self.route.model,
                                         opts.default_max_tokens if opts else 4096))

    def stream(self, resp):
        return AnthropicStream(resp)

    def answer(self, obj: dict) -> dict:
        return to_chat_completion(obj)

    def error(self, body: bytes, status: int) -> bytes:
        return to_openai_error(body, status)


def hooks_for(route) -> Optional[Hooks]:
    if getattr(route, "kind", "local") != "cloud":
        return None
    return AnthropicHooks(route) if route.provider == "anthropic" else Hooks(route)
