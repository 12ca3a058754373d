"""Netdata -> MQTT bridge against a real mosquitto, the Netdata parent double and an MQTT subscriber playing Home
Assistant (device-based discovery, state, availability, expire_after, restarts)."""
from __future__ import annotations

import json
import threading

import pytest
import yaml

from homelab_ha import config
from homelab_ha.bridge import Bridge
from netdata_api import NetdataDouble, base_host, god_gpu_unified, pythond_gpu

from ha_rig import USERS, HASubscriber


@pytest.fixture
def netdata():
    d = NetdataDouble({"gw": base_host(),
                       "eyes": {**base_host(cpu=30.0), **pythond_gpu(0), **pythond_gpu(1, util=5.0)},
                       "spark": {**base_host(cpu=55.0), **god_gpu_unified()}})
    yield d
    d.stop()


def write_cfg(tmp_path, broker, netdata, **extra):
    cfg = {"netdata_url": netdata.url, "poll_interval_s": 1, "expire_after_s": 3, "stale_after_s": 30,
           "hosts": ["gw", "eyes", {"name": "spark", "unified_memory": True, "label": "Spark"}],
           "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "bridge", "client_id": "bridge-test"},
           **extra}
    p = tmp_path / "bridge.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


@pytest.fixture
def run_bridge(tmp_path, broker, netdata, monkeypatch):
    monkeypatch.setenv(config.PASSWORD_ENV, USERS["bridge"])
    started = []

    def start(**extra):
        b = Bridge(config.load(write_cfg(tmp_path, broker, netdata, **extra)))
        t = threading.Thread(target=b.run, daemon=True)
        t.start()
        started.append((b, t))
        return b
    yield start
    for b, t in started:
        b.stop()
        t.join(10)


def disc(ha, host):
    return ha.last_json(f"homeassistant/device/homelab_{host}/config")


def test_discovery_state_and_probing(ha, run_bridge):
    run_bridge()
    ha.wait(lambda: all(disc(ha, h) for h in ("gw", "eyes", "spark")), what="discovery of three hosts")
    gw, eyes, spark = disc(ha, "gw"), disc(ha, "eyes"), disc(ha, "spark")
    for d, host in ((gw, "gw"), (eyes, "eyes"), (spark, "spark")):
        assert d["dev"]["ids"] == [f"homelab_{host}"]
        assert d["o"]["name"] == "homelab-ha-bridge"
        assert d["state_topic"] == f"homelab/netdata/{host}/state"
        assert d["availability_mode"] == "all"
        assert [a["topic"] for a in d["availability"]] == ["homelab/netdata/bridge/status",
                                                           f"homelab/netdata/{host}/availability"]
        for uid, c in d["cmps"].items():
            assert c["p"] == "sensor" and c["unique_id"] == uid and c["expire_after"] == 3
            assert c["value_template"].startswith("{{ value_json.")
    keys = {h: {k.split("_", 2)[2] for k in d["cmps"]} for h, d in (("gw", gw), ("eyes", eyes), ("spark", spark))}
    host_keys = {"cpu", "ram_pct", "ram_used", "load1", "disk_root_pct"}
    assert keys["gw"] == host_keys                               # no GPU: no ghost GPU sensors
    assert keys["eyes"] == host_keys | {f"gpu{i}_{k}" for i in (0, 1) for k in ("util", "mem", "temp", "power")}
    assert keys["spark"] == host_keys | {"gpu0_util", "gpu0_temp", "gpu0_power"}   # unified: no GPU memory
    assert "unified" in spark["cmps"]["homelab_spark_ram_pct"]["name"]
    assert eyes["cmps"]["homelab_eyes_gpu0_temp"]["device_class"] == "temperature"
    # retained: a Home Assistant that connects later gets them too
    assert ha.retained["homeassistant/device/homelab_gw/config"]

    ha.wait(lambda: ha.last_json("homelab/netdata/spark/state"), what="spark state")
    gw_state = ha.last_json("homelab/netdata/gw/state")
    assert gw_state["cpu"] == 12.5 and gw_state["ram_pct"] == 37.5 and gw_state["disk_root_pct"] == 35.0
    assert gw_state["load1"] == 0.7 and gw_state["ram_used"] == 6000.0
    eyes_state = ha.last_json("homelab/netdata/eyes/state")
    assert eyes_state["gpu0_mem"] == pytest.approx(59.38, abs=0.01) and eyes_state["gpu1_util"] == 5.0
    assert eyes_state["gpu0_power"] == 180.0 and eyes_state["gpu0_temp"] == 61.0
    assert "gpu0_mem" not in ha.last_json("homelab/netdata/spark/state")
    for h in ("gw", "eyes", "spark"):
        assert ha.on(f"homelab/netdata/{h}/availability")[-1] == b"online"
    assert ha.retained["homelab/netdata/bridge/status"] == b"online"


def test_stale_host_goes_unavailable_and_netdata_restart(ha, run_bridge, netdata):
    run_bridge()
    ha.wait(lambda: ha.on("homelab/netdata/eyes/availability")[-1:] == [b"online"], what="eyes online")
    netdata.stale.add("eyes")          # the child stopped streaming: the parent's values stop moving
    ha.wait(lambda: ha.on("homelab/netdata/eyes/availability")[-1:] == [b"offline"], what="eyes offline")
    assert ha.on("homelab/netdata/gw/availability")[-1] == b"online"
    port = netdata.port
    netdata.stop()                      # the parent itself goes away: every host unavailable
    ha.wait(lambda: all(ha.on(f"homelab/netdata/{h}/availability")[-1:] == [b"offline"]
                        for h in ("gw", "spark")), what="all offline")
    netdata.stale.clear()
    netdata.port = port
    netdata.start()
    ha.wait(lambda: all(ha.on(f"homelab/netdata/{h}/availability")[-1:] == [b"online"]
                        for h in ("gw", "eyes", "spark")), what="all back online", timeout=15)


def test_broker_restart_and_home_assistant_birth(broker, run_bridge):
    ha = HASubscriber(broker)
    try:
        run_bridge()
        ha.wait(lambda: disc(ha, "gw"), what="discovery")
        n = len(ha.on("homeassistant/device/homelab_gw/config"))
        ha.publish("homeassistant/status", b"online")        # Home Assistant restarted: discovery again
        ha.wait(lambda: len(ha.on("homeassistant/device/homelab_gw/config")) > n, what="rediscovery")
    finally:
        ha.close()
    broker.restart()
    ha = HASubscriber(broker)           # a fresh Home Assistant after the broker restart
    try:
        ha.wait(lambda: disc(ha, "gw") and disc(ha, "spark"), what="discovery after broker restart", timeout=20)
        before = len(ha.on("homelab/netdata/gw/state"))
        ha.wait(lambda: len(ha.on("homelab/netdata/gw/state")) > before + 1, what="state after restart",
                timeout=20)
        ha.wait(lambda: ha.retained.get("homelab/netdata/bridge/status") == b"online", what="birth")
    finally:
        ha.close()


def test_stop_marks_bridge_offline(ha, run_bridge):
    b = run_bridge()
    ha.wait(lambda: ha.on("homelab/netdata/bridge/status")[-1:] == [b"online"], what="online")
    b.stop()
    ha.wait(lambda: ha.on("homelab/netdata/bridge/status")[-1:] == [b"offline"], what="offline")


@pytest.mark.parametrize("cfg, field", [
    ({"poll_interval_s": 1}, "hosts: required"),
    ({"hosts": []}, "hosts: at least one host"),
    ({"hosts": [{"label": "x"}]}, "hosts[0].name: required"),
    ({"hosts": ["gw"], "poll_interval_s": 0}, "poll_interval_s: between 1 and 3600"),
    ({"hosts": ["gw"], "mqtt": {"port": 70000}}, "mqtt.port: a TCP port"),
])
def test_config_errors_name_file_and_field(tmp_path, cfg, field):
    p = tmp_path / "bad.yaml"
    p.write_text(json.dumps(cfg))
    with pytest.raises(config.ConfigError) as e:
        Bridge(config.load(str(p)))
    assert str(e.value).startswith(str(p)) and field in str(e.value)
