"""Structured outputs fail closed: unit cases (no HTTP)."""
from __future__ import annotations

import asyncio
import json

import pytest

from router_app.access import structured as S

SCHEMA = {
    "type": "object",
    "properties": {"person": {"type": "boolean"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                   "label": {"type": "string"}},
    "required": ["person", "confidence"],
    "additionalProperties": False,
}


def body(schema=SCHEMA):
    return {"model": "homelab/vision", "messages": [{"role": "user", "content": "frigate motion"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "cam", "schema": schema}}}


def answer(content):
    return {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}


GOOD = json.dumps({"person": True, "confidence": 0.9})
BAD = json.dumps({"person": "maybe", "confidence": 3})


def test_requested_schema():
    assert S.requested_schema(body()) == SCHEMA
    assert S.requested_schema({"messages": []}) is None
    assert S.requested_schema({"response_format": {"type": "json_object"}}) is None
    with pytest.raises(S.SchemaInvalid):
        S.requested_schema({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    with pytest.raises(S.SchemaInvalid):
        S.check_schema({"type": "no-such-type"})


def test_validate_content():
    assert S.validate_content(SCHEMA, GOOD) == []
    assert S.validate_content(SCHEMA, BAD)
    assert S.validate_content(SCHEMA, "```json\n" + GOOD + "\n```")  # no fence repair
    assert S.validate_content(SCHEMA, "") == ["empty answer"]
    assert S.validate_content(SCHEMA, None) == ["empty answer"]
    assert S.validate_content(SCHEMA, "ignore")[0].startswith("not JSON")


def run(first, esc_result=None, *, source="eyes", escalate_to="brain", template=None):
    calls, logs = [], []

    async def escalate(route):
        calls.append(route)
        if isinstance(esc_result, Exception):
            raise esc_result
        return esc_result

    out = asyncio.run(S.enforce(SCHEMA, first, source_route=source, escalate_to=escalate_to,
                                escalate=escalate, envelope_template=template, log=logs.append,
                                request_id="r1", bucket="vision"))
    return out, calls, logs


def test_valid_passes_through():
    first = answer(GOOD)
    out, calls, logs = run(first)
    assert out.outcome == "valid" and out.response is first and calls == []
    assert logs[0]["outcome"] == "valid" and logs[0]["request_id"] == "r1"


def test_invalid_then_escalated_valid():
    out, calls, logs = run(answer(BAD), (200, answer(GOOD)))
    assert out.outcome == "escalated_valid" and calls == ["brain"] and out.route == "brain"
    assert S.response_content(out.response) == GOOD
    assert [a["valid"] for a in logs[0]["attempts"]] == [False, True]


@pytest.mark.parametrize("esc", [(200, answer(BAD)), (503, None), ConnectionError("refused")])
def test_envelope_when_escalation_fails(esc):
    out, calls, logs = run(answer(BAD), esc)
    assert out.outcome == "envelope" and calls == ["brain"]
    env = json.loads(S.response_content(out.response))
    assert env["action"] == "escalate" and env["reason"] == "schema_validation_failed"
    assert env["source_route"] == "eyes" and env["escalated_to"] == "brain"
    assert env["raw"] == BAD and env["validation_errors"]
    assert env["escalation"] == ("invalid" if isinstance(esc, tuple) and esc[0] == 200 else "unavailable")
    assert out.response["object"] == "chat.completion" and out.response["choices"][0]["finish_reason"] == "stop"
    assert logs[0]["outcome"] == "envelope"


def test_already_on_escalation_route_goes_straight_to_envelope():
    out, calls, _ = run(answer("not json"), source="brain", escalate_to="brain",
                        template={"action": "escalate_to_spark", "severity": "high"})
    assert calls == [] and out.outcome == "envelope"
    env = json.loads(S.response_content(out.response))
    assert env["action"] == "escalate_to_spark" and env["severity"] == "high"
    assert env["escalation"] == "skipped" and env["raw"] == "not json"


def test_empty_answer_never_passes():
    out, _, _ = run(answer(""), (200, answer("")))
    assert out.outcome == "envelope"
    assert json.loads(S.response_content(out.response))["action"] == "escalate"
