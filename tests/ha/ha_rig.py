"""The real pieces of the Home Assistant tests: Debian's mosquitto on a loopback port (password file hashed by
mosquitto_passwd -U, an ACL per user) and an MQTT subscriber playing Home Assistant (paho-mqtt)."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from engine import free_port  # tests/router/engine.py (conftest puts tests/router on sys.path)

USERS = {"bridge": "bridge-pw-1", "vision": "vision-pw-2", "ha": "ha-pw-3", "frigate": "frigate-pw-4"}
ACL = """\
user bridge
topic readwrite homelab/netdata/#
topic readwrite homeassistant/#

user vision
topic read frigate/#
topic readwrite homelab/vision/#
topic readwrite broken/vision/status
topic read broken/vision/snapshot
topic write broken/vision/notify/text
topic write broken/vision/timeline

user ha
topic read #
topic write homeassistant/status

user frigate
topic readwrite frigate/#
topic write homelab/vision/snapshot
"""


class Broker:
    def __init__(self, workdir: pathlib.Path):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe) or not shutil.which("mosquitto_passwd"):
            pytest.fail("mosquitto is not installed: run `make deps` (apt-get install -y mosquitto)")
        self.exe = exe
        self.dir = workdir
        self.port = free_port()
        pw = workdir / "passwd"
        pw.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
        pw.chmod(0o600)
        subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True)   # hashes in place; no password on argv
        assert all(line.split(":", 1)[1].startswith("$7$") for line in pw.read_text().splitlines())
        (workdir / "acl").write_text(ACL)
        (workdir / "acl").chmod(0o600)
        (workdir / "data").mkdir(exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"""per_listener_settings false
allow_anonymous false
password_file {pw}
acl_file {workdir / 'acl'}
persistence true
persistence_location {workdir / 'data'}/
log_dest file {workdir / 'mosquitto.log'}
user {os.environ.get('USER') or 'root'}
listener {self.port} 127.0.0.1
""")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto exited: " + (self.dir / "mosquitto.log").read_text()[-2000:])
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def restart(self):
        self.stop()
        self.start()


class HASubscriber:
    """Subscribes like Home Assistant: the discovery prefix, everything under homelab/, frigate/ and broken/."""

    def __init__(self, broker: Broker, user="ha"):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.retained: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ha-test-{time.time_ns()}",
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(user, USERS[user])
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([("homeassistant/#", 1), ("homelab/#", 1),
                                                             ("broken/#", 1)])
        c.on_subscribe = lambda cl, u, mid, rcs, p: self.ready.set()     # the broker acknowledged them
        c.on_message = self._msg
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        assert self.ready.wait(5), "HA subscriber did not connect and subscribe"
        self.client = c

    def _msg(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.retained[msg.topic] = bytes(msg.payload)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if mqtt.topic_matches_sub(topic, t)]

    def last_json(self, topic: str):
        got = self.on(topic)
        return json.loads(got[-1]) if got else None

    def wait(self, pred, timeout=10.0, what="messages"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; seen topics: "
                             f"{sorted({t for t, _, _ in self.messages})}")

    def publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def publisher(broker: Broker, user: str):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.time_ns()}", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, USERS[user])
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c
