"""End to end on the lab: the home automation layer (mosquitto, the Netdata -> MQTT bridge, the vision-notifier)
converged by site.yml on the gateway. A subscriber plays Home Assistant from inside the gateway container
(mosquitto_sub as user homeassistant); Frigate-shaped events are published as user frigate.

The lab's eyes engine is a tiny llama.cpp model, so its verdict on a test image cannot be chosen here: the cases
that need a chosen verdict (a confident negative dropped, a positive on all channels) are covered with a
controllable engine in tests/ha/test_vision.py. Here: every event that is not a confident negative is notified,
the senior route down still gives a (synthetic) notification, three triggers give one notification, and a broken
archive channel does not silence the other two.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml

import homelab_labctl as labmod  # tests/lab/lab.py, loaded by conftest.py
from test_lab_e2e import stopped_engine, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.xdist_group("lab")]
JPEG = "/tmp/lab-camera.jpg"


def _secrets():
    return yaml.safe_load((labmod.STATE / "secrets.yml").read_text())


def _gw(lab):
    inv = lab["lab"]
    return inv.container(inv.gateway)


def _sub(lab, topic, count=1, wait=30, user="homeassistant"):
    pw = _secrets()["vault_mosquitto_passwords"][user]
    proc = labmod.podman_exec(_gw(lab), "mosquitto_sub", "-h", "127.0.0.1", "-u", user, "-P", pw, "-t", topic,
                              "-v", "-C", str(count), "-W", str(wait), check=False, timeout=wait + 10)
    out = []
    for line in proc.stdout.splitlines():
        t, _, payload = line.partition(" ")
        out.append((t, payload))
    return out


def _pub(lab, topic, payload, user="frigate", file=None):
    pw = _secrets()["vault_mosquitto_passwords"][user]
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-u", user, "-P", pw, "-q", "1", "-t", topic]
    args += ["-f", file] if file else ["-m", payload]
    labmod.podman_exec(_gw(lab), *args)


def _decisions(lab):
    proc = labmod.podman_exec(_gw(lab), "cat", "/var/log/homelab-vision/vision-decisions.jsonl", check=False)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _event(eid, camera):
    after = {"id": eid, "camera": camera, "label": "person", "top_score": 0.9, "false_positive": False,
             "start_time": time.time(), "end_time": None, "current_zones": [], "has_snapshot": True}
    return json.dumps({"type": "new", "before": after, "after": after})


def _send(lab, eid, camera):
    labmod.podman_exec(_gw(lab), "sh", "-c", f"printf '\\377\\330\\377\\340lab-frame\\377\\331' > {JPEG}")
    _pub(lab, f"frigate/{camera}/person/snapshot", "", file=JPEG)
    _pub(lab, "frigate/events", _event(eid, camera))


def _outcome(lab, eid, timeout=180):
    def done():
        for d in _decisions(lab):
            if d.get("key") == eid and d["kind"] in ("notified", "dropped"):
                return d
        return None
    return wait_until(done, timeout=timeout, interval=2, what=f"a decision for {eid}")


def test_discovery_and_state_of_every_netdata_host(lab):
    hosts = sorted(lab["lab"].groups["netdata"])
    got = _sub(lab, "homeassistant/device/+/config", count=len(hosts), wait=60)
    configs = {t.split("/")[2]: json.loads(p) for t, p in got}
    for h in hosts:
        nid = "homelab_" + "".join(c if c.isalnum() else "_" for c in h)
        assert nid in configs, (h, sorted(configs))
        d = configs[nid]
        assert d["state_topic"] == f"homelab/netdata/{h}/state"
        assert all(c["p"] == "sensor" and c["expire_after"] >= 15 for c in d["cmps"].values())
        assert {"cpu", "ram_pct", "load1"} <= {uid[len(nid) + 1:] for uid in d["cmps"]}
        state = _sub(lab, f"homelab/netdata/{h}/state", wait=60)
        assert state and "cpu" in json.loads(state[0][1]), h
        assert _sub(lab, f"homelab/netdata/{h}/availability", wait=10)[0][1] == "online"


def test_camera_event_is_never_silently_ignored(lab):
    eid = f"lab-{uuid.uuid4().hex[:8]}"
    _send(lab, eid, "front_door")
    d = _outcome(lab, eid)
    if d["kind"] == "dropped":     # only a confident negative may drop, and it is logged
        assert d["reason"] == "confident_negative"
    else:
        assert d["delivered"] == ["archive", "rich", "text"]


def test_senior_route_down_still_notifies(lab, client):
    with stopped_engine(lab, client, "brain"):
        eid = f"lab-{uuid.uuid4().hex[:8]}"
        _send(lab, eid, "garage")
        d = _outcome(lab, eid)
        if d["kind"] == "notified":
            assert d["degraded"] is True and "text" in d["delivered"]


def test_three_triggers_one_decision(lab):
    eid = f"lab-{uuid.uuid4().hex[:8]}"
    review = {"type": "new", "after": {"id": f"rev-{eid}", "camera": "back_door", "start_time": time.time(),
                                       "severity": "alert", "data": {"detections": [eid], "objects": ["person"]}}}
    _pub(lab, "frigate/reviews", json.dumps(review))
    _send(lab, eid, "back_door")
    _pub(lab, "homelab/vision/snapshot", json.dumps({"camera": "back_door", "event_id": eid, "label": "person"}))
    _outcome(lab, eid)
    time.sleep(3)
    decided = [d for d in _decisions(lab) if d.get("key") == eid and d["kind"] in ("notified", "dropped")]
    dups = [d for d in _decisions(lab) if d["kind"] == "duplicate" and d.get("duplicate_of") == eid]
    assert len(decided) == 1 and len(dups) == 2


def test_broken_archive_channel_does_not_silence_the_others(lab):
    gw = _gw(lab)
    path = "/var/lib/homelab-vision/timeline.jsonl"
    labmod.podman_exec(gw, "sh", "-c", f"mv {path} {path}.keep 2>/dev/null; mkdir -p {path}")
    try:
        eid = f"lab-{uuid.uuid4().hex[:8]}"
        _send(lab, eid, "side_gate")
        d = _outcome(lab, eid)
        if d["kind"] == "notified":
            assert d["channels"]["archive"]["ok"] is False and d["delivered"] == ["rich", "text"]
    finally:
        labmod.podman_exec(gw, "sh", "-c", f"rmdir {path}; mv {path}.keep {path} 2>/dev/null; true")
