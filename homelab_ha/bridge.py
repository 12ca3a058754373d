"""Netdata parent -> MQTT -> Home Assistant (``homelab-ha-bridge``).

Every ``poll_interval_s`` the bridge reads each configured host through the Netdata parent and publishes one JSON
state per host. Home Assistant learns the sensors from one retained *device-based* discovery message per host
(``<discovery_prefix>/device/<node_id>/config`` with ``dev``, ``o``, ``cmps``: the HA MQTT integration docs,
"Discovery messages" / "Device discovery payload", https://www.home-assistant.io/integrations/mqtt/).

Availability: the bridge's own status topic carries a retained last will (``offline``) and a birth (``online``); each
host has its own retained availability topic (``offline`` while Netdata cannot give fresh data for it); every
sensor uses both (``availability_mode: all``) and ``expire_after`` so a value that stops arriving goes unavailable.
Discovery is republished on every broker (re)connect and when Home Assistant announces itself on
``<discovery_prefix>/status``; the probe is redone every ``reprobe_every`` polls.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time

from . import __version__, config
from .mqttlink import MqttLink, PublishFailed
from .netdata import NetdataClient, NetdataError, probe, read_state

log = logging.getLogger("homelab_ha.bridge")


class Bridge:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.interval = float(config.get(cfg, "poll_interval_s", (int, float), 15, lambda v: 1 <= v <= 3600,
                                         "between 1 and 3600"))
        self.expire_after = int(config.get(cfg, "expire_after_s", int, int(self.interval * 3) + 1,
                                           lambda v: v >= self.interval, "at least poll_interval_s"))
        self.stale_after = float(config.get(cfg, "stale_after_s", (int, float), self.interval * 3))
        self.prefix = config.get(cfg, "topic_prefix", str, "homelab/netdata").rstrip("/")
        self.disc = config.get(cfg, "discovery_prefix", str, "homeassistant").rstrip("/")
        self.reprobe_every = config.get(cfg, "reprobe_every", int, 20, lambda v: v >= 1, "at least 1")
        hosts = config.get(cfg, "hosts", list, check=lambda v: len(v) > 0, why="at least one host")
        self.hosts: dict[str, dict] = {}
        for i, h in enumerate(hosts):
            if isinstance(h, str):
                h = {"name": h}
            if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not h["name"]:
                raise config.ConfigError(f"{cfg['_path']}: hosts[{i}].name: required (a Netdata hostname)")
            self.hosts[h["name"]] = {"unified_memory": bool(h.get("unified_memory", False)),
                                     "label": h.get("label", h["name"])}
        self.netdata = NetdataClient(config.get(cfg, "netdata_url", str, "http://127.0.0.1:19999"))
        self.status_topic = f"{self.prefix}/bridge/status"
        self.link = MqttLink(config.broker(cfg, "homelab-ha-bridge"), self.status_topic)
        self.link.on_connect_hooks.append(self.publish_all_discovery)
        self.link.subscribe(f"{self.disc}/status", self._ha_status)
        self.found: dict[str, dict] = {}      # host -> probe result
        self.available: dict[str, str] = {}   # host -> last availability published
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.polls = 0

    # ------------------------------------------------------------------ topics and payloads
    @staticmethod
    def node_id(host: str) -> str:
        return "homelab_" + "".join(c if c.isalnum() else "_" for c in host)

    def state_topic(self, host: str) -> str:
        return f"{self.prefix}/{host}/state"

    def avail_topic(self, host: str) -> str:
        return f"{self.prefix}/{host}/availability"

    def discovery(self, host: str) -> tuple[str, dict]:
        nid = self.node_id(host)
        meta = self.hosts[host]
        cmps = {}
        for key, (chart, spec) in sorted(self.found.get(host, {}).items()):
            c = {"p": "sensor", "name": spec.name, "unique_id": f"{nid}_{key}",
                 "value_template": "{{ value_json.%s }}" % key, "state_class": "measurement",
                 "expire_after": self.expire_after}
            if spec.unit:
                c["unit_of_measurement"] = spec.unit
            if spec.device_class:
                c["device_class"] = spec.device_class
            if spec.icon:
                c["icon"] = spec.icon
            if key == "ram_pct" and meta["unified_memory"]:
                c["name"] = "RAM used (unified CPU+GPU memory)"
            cmps[f"{nid}_{key}"] = c
        payload = {
            "dev": {"ids": [nid], "name": meta["label"], "mf": "homelab-ai", "mdl": "Netdata node",
                    "sw": __version__},
            "o": {"name": "homelab-ha-bridge", "sw": __version__},
            "cmps": cmps,
            "state_topic": self.state_topic(host),
            "availability": [{"topic": self.status_topic}, {"topic": self.avail_topic(host)}],
            "availability_mode": "all",
            "qos": 1,
        }
        return f"{self.disc}/device/{nid}/config", payload

    # ------------------------------------------------------------------ publishing
    def publish_discovery(self, host: str) -> None:
        if not self.found.get(host):
            return
        topic, payload = self.discovery(host)
        self.link.publish(topic, json.dumps(payload, sort_keys=True), qos=1, retain=True)

    def publish_all_discovery(self) -> None:
        with self._lock:
            for host in self.hosts:
                try:
                    self.publish_discovery(host)
                    if host in self.available:
                        self.link.publish(self.avail_topic(host), self.available[host], qos=1, retain=True)
                except PublishFailed as e:
                    log.warning("bridge: discovery for %s not published: %s", host, e)

    def _ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip() == b"online":    # Home Assistant restarted: give it the configs again
            threading.Thread(target=self.publish_all_discovery, daemon=True).start()

    def _set_available(self, host: str, value: str) -> None:
        if self.available.get(host) != value:
            self.link.publish(self.avail_topic(host), value, qos=1, retain=True)
            self.available[host] = value
            log.info("bridge: %s is %s", host, value)

    # ------------------------------------------------------------------ one poll
    def poll_once(self) -> None:
        reprobe = self.polls % self.reprobe_every == 0
        self.polls += 1
        with self._lock:
            for host, meta in self.hosts.items():
                try:
                    metrics = self.netdata.allmetrics(host)
                    if reprobe or not self.found.get(host):
                        found = probe(self.netdata.charts(host), metrics, meta["unified_memory"])
                        if set(found) != set(self.found.get(host, {})):
                            self.found[host] = found
                            log.info("bridge: %s exposes %s", host, ", ".join(sorted(found)) or "nothing")
                            self.publish_discovery(host)
                    state, newest = read_state(self.found.get(host, {}), metrics)
                    fresh = newest is not None and time.time() - newest <= self.stale_after
                    if not state or not fresh:
                        self._set_available(host, "offline")
                        continue
                    self._set_available(host, "online")
                    self.link.publish(self.state_topic(host), json.dumps(state, sort_keys=True), qos=0)
                except NetdataError as e:
                    log.warning("bridge: %s: %s", host, e)
                    try:
                        self._set_available(host, "offline")
                    except PublishFailed:
                        pass
                except PublishFailed as e:
                    log.warning("bridge: %s: %s", host, e)

    def run(self) -> None:
        self.link.start()
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        self.link.stop()

    def stop(self) -> None:
        self._stop.set()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="homelab-ha-bridge", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--check", action="store_true", help="validate the config and exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        bridge = Bridge(config.load(args.config))
    except config.ConfigError as e:
        print(f"homelab-ha-bridge: {e}")
        return 2
    if args.check:
        print(f"{args.config}: ok ({len(bridge.hosts)} hosts)")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    signal.signal(signal.SIGINT, lambda *_: bridge.stop())
    bridge.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
