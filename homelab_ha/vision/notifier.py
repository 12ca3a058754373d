"""The vision-notifier sidecar (``homelab-vision-notifier``).

Ways in (three triggers of the same camera event, de-duplicated in two layers, dedup.py):
  real-time push   ``frigate/reviews`` (MQTT)
  parallel push    ``frigate/events`` (MQTT)
  polled fallback  Ring-style snapshots: ``POST /v1/snapshot`` on the loopback listener, or ``<prefix>/snapshot``
                   on MQTT (a Ring listener, or a poller re-sending what it finds).
Then: stage 1 (fast vision verdict, structured JSON) -> a confident negative (``negative`` with confidence >=
``drop_confidence``) is dropped *and logged*; everything else -> stage 2 (senior description) -> if stage 2 fails, a
synthetic envelope built from stage 1 -> the three channels (channels.py), each on its own.
Safety rule (seed 003): a camera event never silently produces "ignore" — any error on the way is itself escalated
to a (degraded) notification, and every event and decision is one line in ``<log_dir>/vision-decisions.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from .. import config
from ..mqttlink import MqttLink
from .channels import Channels
from .dedup import Deduper
from .stages import RouterClient, StageError, Verdict
from .triggers import BadTrigger, CameraEvent, from_frigate_event, from_frigate_review, from_snapshot

log = logging.getLogger("homelab_ha.vision")
INGEST_TOKEN_ENV = "HOMELAB_VISION_INGEST_TOKEN"


class DecisionLog:
    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self.path = os.path.join(log_dir, "vision-decisions.jsonl")
        self._lock = threading.Lock()

    def write(self, kind: str, **fields) -> None:
        rec = {"ts": round(time.time(), 3), "kind": kind, **fields}
        with self._lock:
            os.makedirs(self.log_dir, exist_ok=True)      # here, not in __init__: `--check` creates nothing
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, sort_keys=True, default=str) + "\n")


class Notifier:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.prefix = config.get(cfg, "topic_prefix", str, "homelab/vision").rstrip("/")
        self.frigate_prefix = config.get(cfg, "frigate_topic_prefix", str, "frigate").rstrip("/")
        self.drop_confidence = float(config.get(cfg, "drop_confidence", (int, float), 0.85,
                                                lambda v: 0 < v <= 1, "in (0, 1]"))
        self.snapshot_wait_s = float(config.get(cfg, "snapshot_wait_s", (int, float), 2.0))
        self.decisions = DecisionLog(config.get(cfg, "log_dir", str, "/var/log/homelab-vision"))
        self.dedup = Deduper(window_s=float(config.get(cfg, "dedup_window_s", (int, float), 30)),
                             id_ttl_s=float(config.get(cfg, "dedup_id_ttl_s", (int, float), 3600)))
        self.router = RouterClient(config.get(cfg, "router_url", str),
                                   os.environ.get(config.ROUTER_KEY_ENV),
                                   stage1_model=config.get(cfg, "stage1_model", str, "homelab/vision"),
                                   stage2_model=config.get(cfg, "stage2_model", str, "homelab/reasoning"),
                                   timeout_s=float(config.get(cfg, "router_timeout_s", (int, float), 30)))
        self.link = MqttLink(config.broker(cfg, "homelab-vision-notifier"), f"{self.prefix}/status")
        self.channels = Channels(self.link, self.prefix,
                                 config.get(cfg, "archive_path", str, "/var/lib/homelab-vision/timeline.jsonl"),
                                 attempts=config.get(cfg, "channel_attempts", int, 3, lambda v: v >= 1, ">= 1"),
                                 backoff_s=float(config.get(cfg, "channel_backoff_s", (int, float), 0.5)))
        self.listen_host = config.get(cfg, "listen.host", str, "127.0.0.1")
        self.listen_port = config.get(cfg, "listen.port", int, 8765, lambda p: 0 <= p < 65536, "a TCP port")
        self.ingest_token = os.environ.get(INGEST_TOKEN_ENV) or None
        self.snapshots: dict[tuple[str, str], bytes] = {}   # (camera, label) -> latest Frigate JPEG
        self.queue: "queue.Queue[Optional[CameraEvent]]" = queue.Queue()
        self.workers = [threading.Thread(target=self._work, daemon=True, name=f"vision-{i}")
                        for i in range(config.get(cfg, "workers", int, 2, lambda v: v >= 1, ">= 1"))]
        self.http: Optional[ThreadingHTTPServer] = None
        self.link.subscribe(f"{self.frigate_prefix}/reviews", self._on_mqtt)
        self.link.subscribe(f"{self.frigate_prefix}/events", self._on_mqtt)
        self.link.subscribe(f"{self.frigate_prefix}/+/+/snapshot", self._on_snapshot_image)
        self.link.subscribe(f"{self.prefix}/snapshot", self._on_mqtt)

    # ------------------------------------------------------------------ ways in
    def submit(self, ev: CameraEvent) -> tuple[bool, Optional[str]]:
        """Claim the event (both de-dup layers) and queue it; returns (accepted, key it duplicates)."""
        self.decisions.write("event", key=ev.key, ids=sorted(ev.ids), camera=ev.camera, label=ev.label,
                             trigger=ev.trigger, event_ts=ev.ts, has_image=ev.image is not None)
        won, dup_of, layer = self.dedup.claim(ev)
        if not won:
            self.decisions.write("duplicate", key=ev.key, duplicate_of=dup_of, layer=layer, trigger=ev.trigger)
            return False, dup_of
        self.queue.put(ev)
        return True, None

    def _on_mqtt(self, topic: str, payload: bytes) -> None:
        try:
            if topic.endswith("/reviews"):
                ev = from_frigate_review(payload)
            elif topic.endswith("/events"):
                ev = from_frigate_event(payload)
            else:
                ev = from_snapshot(payload, "snapshot_mqtt")
        except BadTrigger as e:
            self.decisions.write("bad_trigger", topic=topic, error=str(e))
            log.warning("vision: %s: %s", topic, e)
            return
        if ev is not None:
            self.submit(ev)

    def _on_snapshot_image(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) >= 4 and payload:
            self.snapshots[(parts[-3], parts[-2])] = bytes(payload)

    def _image_for(self, ev: CameraEvent) -> Optional[bytes]:
        if ev.image is not None:
            return ev.image
        deadline = time.time() + self.snapshot_wait_s
        while True:
            img = self.snapshots.get((ev.camera, ev.label))
            if img is not None or time.time() >= deadline:
                return img
            time.sleep(0.05)

    # ------------------------------------------------------------------ the pipeline
    def _work(self) -> None:
        while True:
            ev = self.queue.get()
            if ev is None:
                return
            try:
                self.process(ev)
            except Exception as e:  # noqa: BLE001 - the safety rule: never a silent ignore
                log.exception("vision: %s failed", ev.key)
                self.decisions.write("pipeline_error", key=ev.key, error=f"{type(e).__name__}: {e}")
                self._notify(ev, None, Verdict("ambiguous", 0.0, "pipeline error", "error", str(e)),
                             f"Camera event on {ev.camera} ({ev.label}); processing failed: {e}", True)
            finally:
                self.queue.task_done()

    def process(self, ev: CameraEvent) -> None:
        image = self._image_for(ev)
        t0 = time.monotonic()
        v = self.router.classify(ev.camera, ev.label, image)
        self.decisions.write("stage1", key=ev.key, verdict=v.verdict, confidence=v.confidence, summary=v.summary,
                             source=v.source, detail=v.detail, ms=round((time.monotonic() - t0) * 1000))
        if v.verdict == "negative" and v.source == "model" and v.confidence >= self.drop_confidence:
            self.decisions.write("dropped", key=ev.key, reason="confident_negative", confidence=v.confidence,
                                 threshold=self.drop_confidence)
            return
        t1 = time.monotonic()
        try:
            description, degraded = self.router.describe(ev.camera, v, image), False
            self.decisions.write("stage2", key=ev.key, ok=True, ms=round((time.monotonic() - t1) * 1000))
        except StageError as e:
            description, degraded = self.synthetic(ev, v), True
            self.decisions.write("stage2", key=ev.key, ok=False, error=str(e), envelope="synthetic")
        self._notify(ev, image, v, description, degraded)

    @staticmethod
    def synthetic(ev: CameraEvent, v: Verdict) -> str:
        return (f"{ev.label.capitalize()} event on {ev.camera}. Fast classifier: {v.verdict} "
                f"(confidence {v.confidence:.2f}): {v.summary or 'no summary'}. "
                "Detailed description unavailable (senior model unreachable).")

    def _notify(self, ev: CameraEvent, image: Optional[bytes], v: Verdict, description: str,
                degraded: bool) -> None:
        note = {"id": ev.key, "camera": ev.camera, "label": ev.label, "ts": ev.ts, "trigger": ev.trigger,
                "title": f"{ev.label.capitalize()} at {ev.camera}", "message": description, "degraded": degraded,
                "envelope": "synthetic" if degraded else "model", "verdict": v.verdict,
                "confidence": v.confidence, "stage1_source": v.source}
        results = self.channels.deliver(note, image)
        self.decisions.write("notified", key=ev.key, degraded=degraded, channels=results,
                             delivered=sorted(n for n, r in results.items() if r["ok"]))

    # ------------------------------------------------------------------ HTTP ingest (loopback)
    def _handler(self):
        notifier = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):   # no access log (tokens never logged)
                return

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    return self._reply(200, {"status": "ok", "mqtt": notifier.link.connected.is_set()})
                return self._reply(404, {"error": "not found"})

            def do_POST(self):
                if self.path != "/v1/snapshot":
                    return self._reply(404, {"error": "not found"})
                if notifier.ingest_token and self.headers.get("Authorization") != f"Bearer {notifier.ingest_token}":
                    return self._reply(401, {"error": "missing or wrong bearer token"})
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > 16 * 1024 * 1024:
                    return self._reply(400, {"error": "body: required, at most 16 MiB"})
                try:
                    ev = from_snapshot(self.rfile.read(length), "snapshot_http")
                except BadTrigger as e:
                    return self._reply(400, {"error": str(e)})
                accepted, dup = notifier.submit(ev)
                return self._reply(202, {"accepted": accepted, "key": ev.key, "duplicate_of": dup})

        return Handler

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for w in self.workers:
            w.start()
        self.http = ThreadingHTTPServer((self.listen_host, self.listen_port), self._handler())
        self.listen_port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True, name="vision-http").start()
        self.link.start()

    def stop(self) -> None:
        if self.http:
            self.http.shutdown()
            self.http.server_close()
        for _ in self.workers:
            self.queue.put(None)
        self.link.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="homelab-vision-notifier", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--check", action="store_true", help="validate the config and exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        notifier = Notifier(config.load(args.config))
    except config.ConfigError as e:
        print(f"homelab-vision-notifier: {e}")
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    notifier.start()
    done.wait()
    notifier.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
