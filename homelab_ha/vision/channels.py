"""The three output channels. Each one is tried on its own (own retries, own errors, run side by side), so one
failing never silences the others (seed 003):

* ``rich``    — image + AI description: JSON with the JPEG (base64) on ``<prefix>/notify/rich`` and the raw JPEG on
                ``<prefix>/<camera>/snapshot`` (retained; a Home Assistant MQTT image/camera entity reads it).
* ``text``    — reliable text-only push: small JSON ``{"title", "message", ...}`` on ``<prefix>/notify/text`` (QoS 1).
* ``archive`` — archival timeline: one JSON line appended (and fsync'd) to ``archive_path``, then the same record on
                ``<prefix>/timeline`` (QoS 1).
"""
from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..mqttlink import MqttLink


class Channels:
    def __init__(self, link: MqttLink, prefix: str, archive_path: str, attempts: int = 3, backoff_s: float = 0.5,
                 enabled: tuple = ("rich", "text", "archive")):
        self.link = link
        self.prefix = prefix.rstrip("/")
        self.archive_path = archive_path
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.enabled = enabled
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="channel")

    def rich(self, note: dict, image: bytes | None) -> None:
        body = dict(note)
        if image:
            body["image_b64"] = base64.b64encode(image).decode()
            self.link.publish(f"{self.prefix}/{note['camera']}/snapshot", image, qos=1, retain=True)
        self.link.publish(f"{self.prefix}/notify/rich", json.dumps(body), qos=1)

    def text(self, note: dict, image: bytes | None) -> None:
        body = {k: note[k] for k in ("id", "camera", "title", "message", "degraded", "ts")}
        self.link.publish(f"{self.prefix}/notify/text", json.dumps(body), qos=1)

    def archive(self, note: dict, image: bytes | None) -> None:
        line = json.dumps(note, sort_keys=True) + "\n"
        fd = os.open(self.archive_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.link.publish(f"{self.prefix}/timeline", line.strip(), qos=1)

    def _try(self, fn: Callable, note: dict, image: bytes | None) -> dict:
        err = ""
        for attempt in range(1, self.attempts + 1):
            try:
                fn(note, image)
                return {"ok": True, "attempts": attempt}
            except Exception as e:  # noqa: BLE001 - any failure of one channel stays in that channel
                err = f"{type(e).__name__}: {e}"
                if attempt < self.attempts:
                    time.sleep(self.backoff_s * attempt)
        return {"ok": False, "attempts": self.attempts, "error": err}

    def deliver(self, note: dict, image: bytes | None) -> dict[str, dict]:
        futures = {name: self._pool.submit(self._try, getattr(self, name), note, image) for name in self.enabled}
        return {name: f.result() for name, f in futures.items()}
