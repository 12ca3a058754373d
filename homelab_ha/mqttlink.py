"""One MQTT 5 connection (paho-mqtt 2.x) with a last will, a birth message and automatic reconnects.

On every (re)connect the link publishes the birth payload on the status topic (retained), re-subscribes, and calls
``on_connect_hooks`` so the owner can republish what a restarted broker may have lost (discovery configs).
A refused QoS 1 publish (MQTT 5 PUBACK reason >= 0x80, e.g. "Not authorized" from an ACL) raises PublishFailed.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)


@dataclass
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None       # from the environment, never from the config file
    client_id: str = "homelab-ha"
    tls_ca: str | None = None
    keepalive: int = 30
    session_expiry_s: int = 3600


class PublishFailed(RuntimeError):
    pass


class MqttLink:
    def __init__(self, settings: BrokerSettings, status_topic: str, online: str = "online", offline: str = "offline"):
        self.settings = settings
        self.status_topic = status_topic
        self.online, self.offline = online, offline
        self.connected = threading.Event()
        self.subscribed = threading.Event()   # the broker acknowledged every subscription of this connection
        self._sub_mid: int | None = None
        self.on_connect_hooks: list[Callable[[], None]] = []
        self._subs: dict[str, Callable[[str, bytes], None]] = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                        protocol=mqtt.MQTTv5, reconnect_on_failure=True)
        if settings.username:
            c.username_pw_set(settings.username, settings.password or "")
        if settings.tls_ca:
            c.tls_set(ca_certs=settings.tls_ca)
        c.will_set(status_topic, offline, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        self._refused: dict[int, str] = {}   # mid -> PUBACK reason of a refused publish (MQTT 5, e.g. ACL)
        self.client = c

    # -------------------------------------------------------------- lifecycle
    def start(self, wait_s: float = 10.0) -> bool:
        """Connect (a persistent session: QoS 1 messages sent while this client is away are kept for it for
        ``session_expiry_s``) and wait until connected and subscribed."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        return self.connected.wait(wait_s) and (not self._subs or self.subscribed.wait(wait_s))

    def stop(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, self.offline, qos=1, retain=True)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        self._subs[topic] = handler
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)

    # -------------------------------------------------------------- publishing
    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                timeout: float = 5.0) -> None:
        """Publish and, for QoS >= 1, wait for the broker's acknowledgement; raise PublishFailed otherwise."""
        if not self.connected.is_set():
            raise PublishFailed(f"not connected to {self.settings.host}:{self.settings.port}")
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishFailed(f"publish to {topic} refused locally: {mqtt.error_string(info.rc)}")
        if qos:
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:
                raise PublishFailed(f"publish to {topic}: {e}") from None
            if not info.is_published():
                raise PublishFailed(f"publish to {topic}: no acknowledgement within {timeout}s")
            refused = self._refused.pop(info.mid, None)
            if refused:
                raise PublishFailed(f"publish to {topic} refused by the broker: {refused}")

    # -------------------------------------------------------------- callbacks (paho's network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("mqtt: connect refused: %s", reason_code)
            return
        log.info("mqtt: connected to %s:%s", self.settings.host, self.settings.port)
        client.publish(self.status_topic, self.online, qos=1, retain=True)
        self.subscribed.clear()
        if self._subs:
            _, self._sub_mid = client.subscribe([(t, 1) for t in self._subs])
        self.connected.set()
        for hook in self.on_connect_hooks:
            threading.Thread(target=self._run_hook, args=(hook,), daemon=True).start()

    @staticmethod
    def _run_hook(hook):
        try:
            hook()
        except Exception:  # noqa: BLE001 - a hook failing must not kill the link
            log.exception("mqtt: on-connect hook failed")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if mid == self._sub_mid:
            refused = [str(rc) for rc in reason_codes if rc.is_failure]
            if refused:
                log.warning("mqtt: subscriptions refused: %s", ", ".join(refused))
            self.subscribed.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if reason_code is not None and reason_code.is_failure:
            self._refused[mid] = str(reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        log.warning("mqtt: disconnected (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        for pattern, handler in self._subs.items():
            if mqtt.topic_matches_sub(pattern, msg.topic):
                try:
                    handler(msg.topic, msg.payload)
                except Exception:  # noqa: BLE001
                    log.exception("mqtt: handler for %s failed", msg.topic)
