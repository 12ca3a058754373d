"""Camera events from their three ways in, as one shape.

Frigate's MQTT messages (https://docs.frigate.video/integrations/mqtt/):

* ``frigate/events``: ``{"type": "new"|"update"|"end", "before": {...}, "after": {"id", "camera", "label",
  "top_score", "start_time", "end_time", "has_snapshot", "current_zones", ...}}`` — one per tracked object.
* ``frigate/reviews``: ``{"type": "new"|"update"|"end"|"genai", "before": {...}, "after": {"id", "camera",
  "start_time", "end_time", "severity": "alert"|"detection", "data": {"detections": [event ids], "objects": [...],
  "zones": [...]}}}`` — a review item grouping the tracked objects above.
* ``frigate/<camera>/<object>/snapshot``: a JPEG of the object (cached here, used as the event's image).

Ring-style snapshots (a Ring listener, or the polled fallback that re-sends what it finds): JSON
``{"camera", "event_id", "label"?, "ts"?, "image_b64"?, "source"?}`` by HTTP POST or on an MQTT topic.
"""
from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Optional


class BadTrigger(ValueError):
    pass


@dataclass
class CameraEvent:
    key: str                   # the id the pipeline calls this event by (the first id seen)
    ids: frozenset             # every id this trigger knows it by (event id, review id, detection ids)
    camera: str
    label: str
    ts: float
    trigger: str               # frigate_review | frigate_event | snapshot_http | snapshot_mqtt
    image: Optional[bytes] = None
    extra: dict = field(default_factory=dict)


def _json(payload: bytes | str) -> dict:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadTrigger(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadTrigger("not a JSON object")
    return data


def _str(d: dict, k: str, where: str) -> str:
    v = d.get(k)
    if not isinstance(v, str) or not v:
        raise BadTrigger(f"{where}.{k}: required (a non-empty string)")
    return v


def from_frigate_event(payload: bytes) -> Optional[CameraEvent]:
    """A ``frigate/events`` message; None for ``update``s (the ``new`` one already started the pipeline)."""
    msg = _json(payload)
    kind = msg.get("type")
    if kind not in ("new", "update", "end"):
        raise BadTrigger(f"type: must be new, update or end (got {kind!r})")
    after = msg.get("after")
    if not isinstance(after, dict):
        raise BadTrigger("after: required (an object)")
    if kind == "update" or after.get("false_positive"):
        return None
    eid = _str(after, "id", "after")
    return CameraEvent(key=eid, ids=frozenset({eid}), camera=_str(after, "camera", "after"),
                       label=str(after.get("label") or "object"), ts=float(after.get("start_time") or time.time()),
                       trigger="frigate_event",
                       extra={"top_score": after.get("top_score"), "zones": after.get("current_zones") or []})


def from_frigate_review(payload: bytes) -> Optional[CameraEvent]:
    msg = _json(payload)
    kind = msg.get("type")
    if kind not in ("new", "update", "end", "genai"):
        raise BadTrigger(f"type: must be new, update, end or genai (got {kind!r})")
    if kind in ("update", "genai"):
        return None
    after = msg.get("after")
    if not isinstance(after, dict):
        raise BadTrigger("after: required (an object)")
    rid = _str(after, "id", "after")
    data = after.get("data") if isinstance(after.get("data"), dict) else {}
    dets = [d for d in data.get("detections") or [] if isinstance(d, str)]
    objects = [o for o in data.get("objects") or [] if isinstance(o, str)]
    return CameraEvent(key=dets[0] if dets else rid, ids=frozenset({rid, *dets}),
                       camera=_str(after, "camera", "after"), label=objects[0] if objects else "object",
                       ts=float(after.get("start_time") or time.time()), trigger="frigate_review",
                       extra={"severity": after.get("severity"), "zones": data.get("zones") or []})


def from_snapshot(body: bytes | dict, trigger: str) -> CameraEvent:
    msg = body if isinstance(body, dict) else _json(body)
    eid = _str(msg, "event_id", "body")
    image = None
    if msg.get("image_b64") is not None:
        if not isinstance(msg["image_b64"], str):
            raise BadTrigger("body.image_b64: must be a base64 string")
        try:
            image = base64.b64decode(msg["image_b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadTrigger("body.image_b64: not valid base64") from None
    ts = msg.get("ts", time.time())
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise BadTrigger("body.ts: must be a number (unix seconds)")
    label = msg.get("label", "motion")
    if not isinstance(label, str) or not label:
        raise BadTrigger("body.label: must be a non-empty string")
    return CameraEvent(key=eid, ids=frozenset({eid}), camera=_str(msg, "camera", "body"), label=label,
                       ts=float(ts), trigger=trigger, image=image, extra={"source": msg.get("source", "ring")})
