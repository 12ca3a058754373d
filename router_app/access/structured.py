"""Structured outputs fail closed (seed 003: a camera event never turns into a
silent "ignore").

When a chat request carries ``response_format: {"type": "json_schema",
"json_schema": {"schema": {...}}}`` the engine's answer is parsed as JSON and
validated against that schema (jsonschema, the draft the schema declares,
Draft 2020-12 otherwise). Outcomes:

``valid``            first answer validates; passed through unchanged.
``escalated_valid``  first answer invalid; the request was sent once to the
                     escalation route (``structured.escalate_to``, default the
                     terminal route) and that answer validates.
``envelope``         the escalated answer is invalid too, the escalation route
                     failed / is down, or the request was already on the
                     escalation route: the client gets a normal
                     chat.completion whose content is the synthetic envelope
                     from the config, e.g. ``{"action": "escalate", "reason":
                     "schema_validation_failed", "source_route": "eyes",
                     "raw": "..."}``. Never an empty answer.

Scope (issue 11 item 1): the fail-closed policy above applies only to the buckets listed in
``structured.fail_closed_buckets`` (default ``[vision]``: camera events) and to route pins onto those buckets'
routes. Any other request gets its engine's answer untouched: validated and logged, with the header
``x-homelab-structured: valid | invalid``. An answer carrying ``tool_calls`` always passes through
(``x-homelab-structured: tool_calls``), in every bucket.

Every case (including ``valid``) is one line in ``structured-validation.jsonl``.
The content is checked as sent: no code-fence stripping, no repair.
"""
from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

import jsonschema
from jsonschema import validators as _jsv

RAW_LIMIT = 4096
DEFAULT_ENVELOPE: dict[str, Any] = {"action": "escalate", "reason": "schema_validation_failed"}


class SchemaInvalid(ValueError):
    """The client's own schema is not a valid JSON Schema (answer 400)."""


def requested_schema(body: Any) -> Optional[dict]:
    """The JSON schema a request asks for, or None.

    Raises SchemaInvalid for a ``json_schema`` response_format without a usable
    schema object.
    """
    if not isinstance(body, dict):
        return None
    rf = body.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") != "json_schema":
        return None
    js = rf.get("json_schema")
    if not isinstance(js, dict) or not isinstance(js.get("schema"), dict):
        raise SchemaInvalid("response_format.json_schema.schema must be a JSON object")
    return js["schema"]


class _ValidatorCache:
    """Compiled validators keyed by the schema's canonical JSON (bounded LRU):
    a camera pipeline sends the same schema on every event."""

    def __init__(self, size: int = 256):
        self._size = size
        self._d: "OrderedDict[str, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, schema: dict):
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
                return v
        cls = _jsv.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise SchemaInvalid(f"response_format.json_schema.schema is not a valid JSON Schema: "
                                f"{e.message}") from None
        v = cls(schema, format_checker=cls.FORMAT_CHECKER)
        with self._lock:
            self._d[key] = v
            while len(self._d) > self._size:
                self._d.popitem(last=False)
        return v


_cache = _ValidatorCache()


def check_schema(schema: dict) -> None:
    """Raise SchemaInvalid when the schema itself is unusable (before dispatch)."""
    _cache.get(schema)


def response_content(resp: Any) -> Optional[str]:
    try:
        c = resp["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return c if isinstance(c, str) else None


def has_tool_calls(resp: Any) -> bool:
    """True when the engine answered with tool calls: those always pass through (issue 11 item 1)."""
    try:
        tc = resp["choices"][0]["message"].get("tool_calls")
    except (KeyError, IndexError, TypeError, AttributeError):
        return False
    return isinstance(tc, list) and bool(tc)


def fail_closed_scope(buckets: list, bucket: Optional[str], route: Optional[str], policy: Any) -> bool:
    """A request fails closed when its bucket is listed in ``structured.fail_closed_buckets``, or when it is
    pinned to a route one of those buckets routes to (``homelab/vision`` -> eyes, the vision bucket's route)."""
    if bucket in buckets:
        return True
    return bucket == "pinned" and any(policy.buckets.get(b) == route for b in buckets)


def check_only(schema: dict, first: dict, *, source_route: str, log: Optional[Callable[[dict], None]] = None,
               request_id: Optional[str] = None, bucket: Optional[str] = None) -> Outcome:
    """Outside the fail-closed buckets: validate and log, never change the answer.
    Outcomes: ``tool_calls`` | ``valid`` | ``invalid_passed`` (the engine's answer, untouched)."""
    if has_tool_calls(first):
        out = Outcome("tool_calls", first, source_route, [], {"x-homelab-structured": "tool_calls"})
    else:
        content = response_content(first)
        errs = validate_content(schema, content)
        out = Outcome("invalid_passed" if errs else "valid", first, source_route,
                      [Attempt(source_route, 200, content, errs)],
                      {"x-homelab-structured": "invalid" if errs else "valid"})
    _log(log, out, request_id, bucket)
    return out


def validate_content(schema: dict, content: Optional[str]) -> list[str]:
    """[] when ``content`` is JSON valid against ``schema``; else the reasons."""
    if content is None or not content.strip():
        return ["empty answer"]
    try:
        doc = json.loads(content)
    except ValueError as e:
        return [f"not JSON: {e}"]
    v = _cache.get(schema)
    errs = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
    out = []
    for e in errs[:10]:
        where = "/".join(str(p) for p in e.absolute_path) or "$"
        out.append(f"{where}: {e.message}")
    return out


@dataclass
class Attempt:
    route: str
    status: Optional[int]
    content: Optional[str]
    errors: list[str]
    error: Optional[str] = None  # transport / upstream failure


@dataclass
class Outcome:
    outcome: str                       # valid | escalated_valid | envelope
    response: dict                     # what the client gets (status 200)
    route: str                         # route whose answer is returned (source for envelope)
    attempts: list[Attempt] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


# An escalation call: route name -> (http status, parsed JSON body or None).
# It may raise; any exception counts as "escalation route unavailable".
EscalateFn = Callable[[str], Awaitable[tuple[int, Optional[dict]]]]


def build_envelope(template: Optional[dict], *, source_route: str, escalated_to: Optional[str],
                   escalation: str, raw: Optional[str], errors: list[str]) -> dict:
    env = copy.deepcopy(template) if template else copy.deepcopy(DEFAULT_ENVELOPE)
    env.setdefault("action", "escalate")
    env.setdefault("reason", "schema_validation_failed")
    env["source_route"] = source_route
    env["escalated_to"] = escalated_to
    env["escalation"] = escalation          # invalid | unavailable | skipped
    env["raw"] = (raw or "")[:RAW_LIMIT]
    env["validation_errors"] = errors[:10]
    return env


def envelope_response(first: dict, envelope: dict, model: Optional[str]) -> dict:
    """A well-formed chat.completion carrying the envelope as its content."""
    usage = first.get("usage") if isinstance(first, dict) else None
    return {
        "id": "chatcmpl-envelope-" + uuid.uuid4().hex[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or (first.get("model") if isinstance(first, dict) else None) or "homelab/envelope",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": json.dumps(envelope, ensure_ascii=False)},
            "finish_reason": "stop",
        }],
        "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "homelab_envelope": True,
    }


async def enforce(
    schema: dict, first: dict, *, source_route: str, escalate_to: Optional[str],
    escalate: EscalateFn, envelope_template: Optional[dict] = None,
    log: Optional[Callable[[dict], None]] = None, request_id: Optional[str] = None,
    bucket: Optional[str] = None,
) -> Outcome:
    """Validate ``first`` (the engine's 200 answer) and apply the fail-closed
    policy. ``escalate_to`` None or equal to ``source_route`` skips the
    escalation (the request is already where it would go)."""
    if has_tool_calls(first):     # the model chose to call a tool: never replaced by the envelope
        out = Outcome("tool_calls", first, source_route, [], {"x-homelab-structured": "tool_calls"})
        _log(log, out, request_id, bucket)
        return out
    content = response_content(first)
    errs = validate_content(schema, content)
    a1 = Attempt(source_route, 200, content, errs)
    if not errs:
        out = Outcome("valid", first, source_route, [a1], {"x-homelab-structured": "valid"})
        _log(log, out, request_id, bucket)
        return out

    attempts = [a1]
    if escalate_to and escalate_to != source_route:
        try:
            status, body = await escalate(escalate_to)
        except Exception as e:  # down, refused, timed out, 503...
            attempts.append(Attempt(escalate_to, None, None, [], error=f"{type(e).__name__}: {e}"))
            escalation = "unavailable"
        else:
            if status == 200 and isinstance(body, dict):
                c2 = response_content(body)
                e2 = validate_content(schema, c2)
                attempts.append(Attempt(escalate_to, status, c2, e2))
                if not e2:
                    out = Outcome("escalated_valid", body, escalate_to, attempts,
                                  {"x-homelab-structured": "escalated"})
                    _log(log, out, request_id, bucket)
                    return out
                escalation = "invalid"
            else:
                attempts.append(Attempt(escalate_to, status, None, [], error=f"upstream status {status}"))
                escalation = "unavailable"
    else:
        escalation = "skipped"

    env = build_envelope(envelope_template, source_route=source_route,
                         escalated_to=escalate_to if escalation != "skipped" else None,
                         escalation=escalation, raw=content, errors=errs)
    resp = envelope_response(first, env, first.get("model") if isinstance(first, dict) else None)
    out = Outcome("envelope", resp, source_route, attempts, {"x-homelab-structured": "envelope"})
    _log(log, out, request_id, bucket)
    return out


def _log(log: Optional[Callable[[dict], None]], out: Outcome, request_id: Optional[str],
         bucket: Optional[str]) -> None:
    if log is None:
        return
    rec = {
        "time": time.time(),
        "request_id": request_id,
        "bucket": bucket,
        "outcome": out.outcome,
        "route": out.route,
        "attempts": [
            {"route": a.route, "status": a.status, "valid": (a.error is None and not a.errors),
             "errors": a.errors[:5], "error": a.error,
             "raw": (a.content or "")[:512] if (a.errors or a.error) else None}
            for a in out.attempts
        ],
    }
    try:
        log(rec)
    except Exception:
        pass
