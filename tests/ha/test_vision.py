"""The vision-notifier sidecar end to end on this machine: a real mosquitto, a real homelab-router in front of the
loopback test engines (eyes = fast vision, brain = senior), Frigate-shaped MQTT messages (docs.frigate.video/
integrations/mqtt) and Ring-style snapshot POSTs, and a subscriber playing Home Assistant."""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
import yaml

from homelab_ha import config
from homelab_ha.vision.dedup import Deduper
from homelab_ha.vision.notifier import INGEST_TOKEN_ENV, Notifier
from homelab_ha.vision.triggers import CameraEvent

from ha_rig import USERS, publisher

IMAGE = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00test-camera-frame\xff\xd9"   # JPEG-framed bytes (no model decodes them)
NEG = json.dumps({"verdict": "negative", "confidence": 0.97, "summary": "empty driveway, moving shadows"})
POS = json.dumps({"verdict": "positive", "confidence": 0.91, "summary": "a person at the door",
                  "objects": ["person"]})
DESCRIPTION = "A person in a red jacket is standing at the front door holding a parcel."


@pytest.fixture
def frigate(broker):
    c = publisher(broker, "frigate")
    yield c
    c.disconnect()
    c.loop_stop()


@pytest.fixture
def make_notifier(tmp_path, broker, vision_router, monkeypatch):
    monkeypatch.setenv(config.PASSWORD_ENV, USERS["vision"])
    monkeypatch.setenv(INGEST_TOKEN_ENV, "ingest-token-1")
    started = []

    def make(**extra):
        cfg = {"router_url": vision_router.url + "/v1", "log_dir": str(tmp_path / "log"),
               "archive_path": str(tmp_path / "timeline.jsonl"), "snapshot_wait_s": 1.0,
               "channel_attempts": 2, "channel_backoff_s": 0.05, "listen": {"port": 0},
               "mqtt": {"port": broker.port, "username": "vision", "client_id": f"vision-{len(started)}"}, **extra}
        p = tmp_path / f"vision-{len(started)}.yaml"
        p.write_text(yaml.safe_dump(cfg))
        n = Notifier(config.load(str(p)))
        n.start()
        assert n.link.connected.wait(5)
        started.append(n)
        return n
    yield make
    for n in started:
        n.stop()


def decisions(n: Notifier) -> list[dict]:
    try:
        with open(n.decisions.path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def kinds(n, key=None):
    return [d["kind"] for d in decisions(n) if key is None or d.get("key") == key]


def wait_decision(n, kind, key, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if kind in kinds(n, key):
            return [d for d in decisions(n) if d["kind"] == kind and d.get("key") == key][-1]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} decision for {key}: {decisions(n)}")


def frigate_event(eid, camera="front_door", label="person", kind="new"):
    after = {"id": eid, "camera": camera, "label": label, "sub_label": None, "top_score": 0.93,
             "false_positive": False, "start_time": time.time(), "end_time": None, "score": 0.9,
             "current_zones": ["porch"], "entered_zones": ["porch"], "has_snapshot": True, "has_clip": True}
    return json.dumps({"type": kind, "before": after, "after": after})


def frigate_review(rid, eids, camera="front_door", label="person"):
    after = {"id": rid, "camera": camera, "start_time": time.time(), "end_time": None, "severity": "alert",
             "thumb_path": f"/media/frigate/clips/review/thumb-{camera}-{rid}.webp",
             "data": {"detections": eids, "objects": [label], "sub_labels": [], "zones": ["porch"], "audio": []}}
    return json.dumps({"type": "new", "before": after, "after": after})


def snapshot_post(n, body, token="ingest-token-1"):
    req = urllib.request.Request(f"http://127.0.0.1:{n.listen_port}/v1/snapshot", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def send_event(frigate, eid, camera="front_door", label="person"):
    frigate.publish(f"frigate/{camera}/{label}/snapshot", IMAGE, qos=1, retain=True).wait_for_publish(5)
    frigate.publish("frigate/events", frigate_event(eid, camera, label), qos=1).wait_for_publish(5)


def test_confident_negative_is_dropped_and_logged(make_notifier, vision_engines, frigate, ha):
    vision_engines["eyes"].content = NEG
    n = make_notifier()
    send_event(frigate, "1700000001.1-neg", camera="driveway")
    d = wait_decision(n, "dropped", "1700000001.1-neg")
    assert d["reason"] == "confident_negative" and d["confidence"] == 0.97
    req = vision_engines["eyes"].requests[-1]
    assert req["response_format"]["type"] == "json_schema"
    assert any(p.get("type") == "image_url" for p in req["messages"][0]["content"])
    assert base64.b64encode(IMAGE).decode() in req["messages"][0]["content"][1]["image_url"]["url"]
    assert vision_engines["brain"].requests == []
    time.sleep(0.5)
    assert ha.on("homelab/vision/notify/#") == [] and ha.on("homelab/vision/timeline") == []
    assert kinds(n, "1700000001.1-neg") == ["event", "stage1", "dropped"]


def test_positive_reaches_all_three_channels(make_notifier, vision_engines, frigate, ha, tmp_path):
    vision_engines["eyes"].content = POS
    vision_engines["brain"].content = DESCRIPTION
    n = make_notifier()
    send_event(frigate, "1700000002.2-pos")
    d = wait_decision(n, "notified", "1700000002.2-pos")
    assert d["delivered"] == ["archive", "rich", "text"] and d["degraded"] is False
    rich = ha.last_json("homelab/vision/notify/rich")
    assert rich["message"] == DESCRIPTION and base64.b64decode(rich["image_b64"]) == IMAGE
    assert ha.retained["homelab/vision/front_door/snapshot"] == IMAGE
    text = ha.last_json("homelab/vision/notify/text")
    assert text == {"id": "1700000002.2-pos", "camera": "front_door", "title": "Person at front_door",
                    "message": DESCRIPTION, "degraded": False, "ts": text["ts"]}
    assert ha.last_json("homelab/vision/timeline")["id"] == "1700000002.2-pos"
    archived = [json.loads(line) for line in (tmp_path / "timeline.jsonl").read_text().splitlines()]
    assert archived[-1]["message"] == DESCRIPTION and archived[-1]["verdict"] == "positive"
    assert vision_engines["brain"].models_seen() == ["qwen3.6-35b-a3b-fp8"]
    assert kinds(n, "1700000002.2-pos") == ["event", "stage1", "stage2", "notified"]


def test_senior_route_down_still_delivers_synthetic_envelope(make_notifier, vision_engines, frigate, ha):
    vision_engines["eyes"].content = POS
    vision_engines["brain"].mode = "fail500"
    n = make_notifier()
    send_event(frigate, "1700000003.3-down", camera="garage")
    d = wait_decision(n, "notified", "1700000003.3-down")
    assert d["degraded"] is True and d["delivered"] == ["archive", "rich", "text"]
    s2 = [x for x in decisions(n) if x["kind"] == "stage2" and x["key"] == "1700000003.3-down"][0]
    assert s2["ok"] is False and s2["envelope"] == "synthetic"
    text = ha.last_json("homelab/vision/notify/text")
    assert text["degraded"] is True and "a person at the door" in text["message"]
    assert "senior model unreachable" in text["message"]


def test_off_schema_stage1_escalates_never_ignores(make_notifier, vision_engines, frigate, ha):
    vision_engines["eyes"].content = "probably nothing, ignore"       # not JSON: the router fails closed
    vision_engines["brain"].content = DESCRIPTION
    n = make_notifier()
    send_event(frigate, "1700000004.4-bad", camera="yard")
    d = wait_decision(n, "notified", "1700000004.4-bad")
    s1 = [x for x in decisions(n) if x["kind"] == "stage1" and x["key"] == "1700000004.4-bad"][0]
    assert s1["verdict"] == "ambiguous" and s1["source"] == "router_envelope"
    assert d["delivered"] == ["archive", "rich", "text"]


def test_three_triggers_one_notification(make_notifier, vision_engines, frigate, ha):
    vision_engines["eyes"].content = POS
    vision_engines["brain"].content = DESCRIPTION
    n = make_notifier()
    eid = "1700000005.5-tri"
    frigate.publish("frigate/back_door/person/snapshot", IMAGE, qos=1, retain=True).wait_for_publish(5)
    frigate.publish("frigate/reviews", frigate_review("rev-5", [eid], camera="back_door"), qos=1)   # real-time
    frigate.publish("frigate/events", frigate_event(eid, camera="back_door"), qos=1)               # parallel
    code, body = snapshot_post(n, {"camera": "back_door", "event_id": eid, "label": "person",      # polled
                                   "source": "frigate-poll", "image_b64": base64.b64encode(IMAGE).decode()})
    assert code == 202
    # a Ring ding for the same moment carries an unrelated id: layer 2 (camera + label + time window)
    frigate.publish("homelab/vision/snapshot", json.dumps({"camera": "back_door", "event_id": "ring-ding-77",
                                                            "label": "person"}), qos=1)
    wait_decision(n, "notified", eid)
    deadline = time.time() + 5
    while time.time() < deadline and len([k for k in kinds(n) if k == "duplicate"]) < 3:
        time.sleep(0.05)
    dups = [d for d in decisions(n) if d["kind"] == "duplicate"]
    assert sorted(d["layer"] for d in dups) == ["id", "id", "window"] and {d["duplicate_of"] for d in dups} == {eid}
    time.sleep(0.5)
    assert len(ha.on("homelab/vision/notify/text")) == 1 and len(ha.on("homelab/vision/notify/rich")) == 1
    assert len(vision_engines["brain"].requests) == 1


def test_broken_archive_channel_does_not_silence_the_others(make_notifier, vision_engines, frigate, ha, tmp_path):
    vision_engines["eyes"].content = POS
    vision_engines["brain"].content = DESCRIPTION
    (tmp_path / "archive-is-a-dir").mkdir()
    n = make_notifier(archive_path=str(tmp_path / "archive-is-a-dir"))
    send_event(frigate, "1700000006.6-arch", camera="porch")
    d = wait_decision(n, "notified", "1700000006.6-arch")
    assert d["delivered"] == ["rich", "text"]
    assert d["channels"]["archive"]["ok"] is False and "IsADirectoryError" in d["channels"]["archive"]["error"]
    assert ha.last_json("homelab/vision/notify/text")["id"] == "1700000006.6-arch"


def test_broker_refusing_the_rich_channel_does_not_silence_the_others(make_notifier, vision_engines, frigate, ha):
    vision_engines["eyes"].content = POS
    vision_engines["brain"].content = DESCRIPTION
    n = make_notifier(topic_prefix="broken/vision")     # the ACL lets this user write text and timeline only
    send_event(frigate, "1700000007.7-acl", camera="side")
    d = wait_decision(n, "notified", "1700000007.7-acl")
    assert d["delivered"] == ["archive", "text"]
    assert "Not authorized" in d["channels"]["rich"]["error"]
    assert ha.last_json("broken/vision/notify/text")["message"] == DESCRIPTION
    assert ha.on("broken/vision/notify/rich") == []


@pytest.mark.parametrize("body, token, code, msg", [
    ({"camera": "x"}, "ingest-token-1", 400, "body.event_id: required"),
    ({"camera": "x", "event_id": "e", "image_b64": "%%%"}, "ingest-token-1", 400, "not valid base64"),
    ({"camera": "x", "event_id": "e", "ts": "yesterday"}, "ingest-token-1", 400, "body.ts: must be a number"),
    ({"camera": "x", "event_id": "e"}, "wrong", 401, "bearer token"),
])
def test_snapshot_ingest_refuses_bad_input(make_notifier, body, token, code, msg):
    n = make_notifier()
    got, answer = snapshot_post(n, body, token)
    assert got == code and msg in answer["error"]


def test_dedup_layers_unit():
    d = Deduper(window_s=10)
    a = CameraEvent("e1", frozenset({"e1"}), "cam", "person", 100.0, "frigate_event")
    assert d.claim(a) == (True, None, "")
    assert d.claim(CameraEvent("e1", frozenset({"r1", "e1"}), "cam", "person", 101.0, "frigate_review")) == \
        (False, "e1", "id")
    assert d.claim(CameraEvent("r1", frozenset({"r1"}), "cam", "person", 300.0, "snapshot_http"))[2] == "id"
    assert d.claim(CameraEvent("x", frozenset({"x"}), "cam", "person", 105.0, "snapshot_mqtt")) == \
        (False, "e1", "window")
    assert d.claim(CameraEvent("y", frozenset({"y"}), "cam", "car", 105.0, "snapshot_mqtt"))[0] is True
    assert d.claim(CameraEvent("z", frozenset({"z"}), "cam", "person", 200.0, "snapshot_mqtt"))[0] is True
