#!/usr/bin/env python3
"""homelab-agent: heartbeats a node's figures to the hub and runs the commands it hands back. Standard library only,
so it deploys as this one file on any Linux node (roles/homelab_agent) without the router's dependencies.

* Connects out only (no listening port). `Authorization: Bearer <token>` from a 0600 file; the hub keeps its sha256.
* Every `interval_s`: POST /hub/agent/heartbeat with GPUs (nvidia-smi --query-gpu), CPU, memory, disks and engines
  (systemctl is-active, optional health URL). Between heartbeats it long-polls /hub/agent/poll, so a queued command
  arrives within about a round trip.
* Commands come from a closed list (NODE_KINDS); each runs its runbook playbooks/runbooks/<kind>.yml through
  `ansible-runner run` (argv, never a shell), with the node's fixed variables and the command's validated arguments
  as extra vars; artifacts are rotated. The result (rc, status, failed tasks, last event lines) goes to
  /hub/agent/result. While it runs, per-task summaries (task start, ok, changed, failed, unreachable, skipped: task
  name and host, never a task's output; agent_runner.py) are read from the runner's job_events and POSTed to
  /hub/agent/events in batches about once a second and before the result, at most EVENTS_PER_COMMAND per command.
* At most once: the agent acknowledges each command it takes (/hub/agent/ack); the hub hands an unacknowledged
  one out again, which is safe because a command id is written to the state file (fsync) before it starts; an id seen before is never run
  again (after a crash mid-run the hub marks it `lost` at expiry, never re-sent). Results not yet accepted are kept in the
  state file and re-sent until the hub takes them.
* Hub down: exponential backoff with jitter (cap 60 s); on reconnect the next heartbeat resyncs everything.

Usage: homelab_agent.py --config /etc/homelab/agent.json [--once]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from queue import Queue

try:                        # in the package (tests, the router's tooling)
    from . import agent_runner
except ImportError:         # deployed as files side by side in /opt/homelab-agent
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import agent_runner     # noqa: E402

run_runbook = agent_runner.run_runbook

VERSION = "1"
EVENTS_PER_COMMAND = 200      # per-task summaries streamed per command; more are counted, not sent
EVENTS_BUFFER = 500           # summaries waiting for the hub (hub down: the oldest go first)
NODE_KINDS = {"restart_engine": {"engine"}, "recover_cuda": set(), "converge_node": {"check"}}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
GPU_FIELDS = ("index", "name", "uuid", "memory.total", "memory.used", "utilization.gpu", "temperature.gpu",
              "power.draw")
GPU_KEYS = ("index", "name", "uuid", "memory_total_mib", "memory_used_mib", "utilization_pct", "temperature_c",
            "power_w")


def log(msg: str) -> None:
    print(f"homelab-agent: {msg}", file=sys.stderr, flush=True)


# ================================================================================= figures
def _num(v: str):
    v = v.strip()
    try:
        return float(v) if "." in v else int(v)
    except ValueError:
        return None                       # "[N/A]", "[Not Supported]"


def gpus(nvidia_smi: str) -> tuple:
    exe = shutil.which(nvidia_smi)
    if not exe:
        return [], None
    try:
        out = subprocess.run([exe, f"--query-gpu={','.join(GPU_FIELDS)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi: {exc}"
    if out.returncode != 0:
        return [], f"nvidia-smi exit {out.returncode}: {out.stderr.strip()[:200]}"
    cards = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(GPU_FIELDS):
            continue
        card = dict(zip(GPU_KEYS, parts))
        for k in GPU_KEYS[3:] + ("index",):
            card[k] = _num(card[k])
        cards.append(card)
    return cards, None


class Cpu:
    def __init__(self):
        self.prev = self._read()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as fh:
                f = [int(x) for x in fh.readline().split()[1:]]
            return sum(f), f[3] + (f[4] if len(f) > 4 else 0)
        except (OSError, ValueError, IndexError):
            return None

    def sample(self) -> dict:
        cur = self._read()
        pct = None
        if cur and self.prev and cur[0] > self.prev[0]:
            total, idle = cur[0] - self.prev[0], cur[1] - self.prev[1]
            pct = round(100.0 * (total - idle) / total, 1)
        self.prev = cur
        load = os.getloadavg() if hasattr(os, "getloadavg") else (None,)
        return {"percent": pct, "count": os.cpu_count(), "load1": load[0]}


def memory() -> dict:
    info = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k in ("MemTotal", "MemAvailable"):
                    info[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return {"total_bytes": info.get("MemTotal"), "available_bytes": info.get("MemAvailable")}


def disks(paths) -> list:
    out = []
    for p in paths:
        try:
            st = os.statvfs(p)
        except OSError as exc:
            out.append({"path": p, "error": str(exc)})
            continue
        out.append({"path": p, "total_bytes": st.f_blocks * st.f_frsize, "free_bytes": st.f_bavail * st.f_frsize})
    return out


def engines(entries) -> list:
    out = []
    systemctl = shutil.which("systemctl")
    for e in entries:
        item = {"name": e["name"], "route": e.get("route"), "unit": e.get("unit")}
        if e.get("unit") and systemctl:
            try:
                r = subprocess.run([systemctl, "is-active", e["unit"]], capture_output=True, text=True, timeout=5)
                item["active"] = r.stdout.strip() or "unknown"
            except (OSError, subprocess.TimeoutExpired):
                item["active"] = "unknown"
        if e.get("health_url"):
            try:
                with urllib.request.urlopen(e["health_url"], timeout=2) as resp:
                    item["healthy"] = 200 <= resp.status < 300
            except (OSError, urllib.error.URLError):
                item["healthy"] = False
        out.append(item)
    return out


# ================================================================================= state (at most once)
class State:
    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.data = {"started": {}, "results": []}
        try:
            with open(path) as fh:
                self.data.update(json.load(fh))
        except (OSError, ValueError):
            pass

    def save(self) -> None:
        tmp = self.path + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def claim(self, cid: str) -> bool:
        """True when this id was never started here (and records it first)."""
        with self.lock:
            if cid in self.data["started"]:
                return False
            self.data["started"][cid] = time.time()
            cutoff = time.time() - 7 * 86400
            self.data["started"] = {k: v for k, v in self.data["started"].items() if v > cutoff}
            self.save()
            return True

    def add_result(self, res: dict) -> None:
        with self.lock:
            self.data["results"].append(res)
            self.save()

    def pending(self) -> list:
        with self.lock:
            return list(self.data["results"])

    def drop(self, cid: str) -> None:
        with self.lock:
            self.data["results"] = [r for r in self.data["results"] if r["id"] != cid]
            self.save()


# ================================================================================= commands
def check(cmd: dict, cfg: dict) -> str | None:
    """The agent's own refusal: closed list, typed arguments, engines it knows. None when acceptable."""
    kind, args = cmd.get("kind"), cmd.get("args")
    if kind not in NODE_KINDS:
        return f"unknown command {kind!r}"
    if not isinstance(args, dict) or set(args) - NODE_KINDS[kind]:
        return f"{kind}: unexpected arguments {sorted(set(args or {}) - NODE_KINDS[kind])}"
    if kind == "restart_engine":
        eng = args.get("engine")
        known = {e["name"] for e in cfg.get("engines", [])}
        if not isinstance(eng, str) or not NAME.match(eng) or eng not in known:
            return f"restart_engine: engine {eng!r} is not one of this node's engines ({', '.join(sorted(known))})"
    if "check" in args and not isinstance(args["check"], bool):
        return "converge_node: check must be a boolean"
    return None


# ================================================================================= the hub
class Hub:
    def __init__(self, cfg: dict):
        self.url = cfg["hub_url"].rstrip("/")
        self.node = cfg["node"]
        with open(cfg["token_file"]) as fh:
            self.token = fh.read().strip()
        self.ctx = ssl.create_default_context(cafile=cfg["ca_file"]) if cfg.get("ca_file") else None

    def post(self, path: str, body: dict, timeout: float) -> dict:
        data = json.dumps(dict(body, node=self.node)).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as resp:
            return json.loads(resp.read() or b"{}")


class Agent:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.hub = Hub(cfg)
        self.state = State(cfg.get("state_file", "/var/lib/homelab-agent/state.json"))
        self.cpu = Cpu()
        self.interval = float(cfg.get("interval_s", 5))
        self.work: Queue = Queue()
        self.backoff = 0.0
        self.started = time.time()
        self.events_lock = threading.Lock()
        self.events: list = []           # [{"id": cid, ...summary}], sent with the next heartbeat or poll
        self.event_counts: dict = {}     # cid -> summaries made (bounded by EVENTS_PER_COMMAND)
        self.events_sent = 0.0
        threading.Thread(target=self._worker, daemon=True).start()

    def _on_event(self, cid: str, summary: dict) -> None:
        with self.events_lock:
            n = self.event_counts[cid] = self.event_counts.get(cid, 0) + 1
            if n > EVENTS_PER_COMMAND:
                return
            self.events.append({"id": cid, **summary})
            del self.events[:-EVENTS_BUFFER]

    def _take_events(self) -> list:
        with self.events_lock:
            out, self.events = self.events, []
            return out

    def _give_back(self, batch: list) -> None:
        """A batch the hub did not take goes back to the front of the queue (bounded)."""
        if batch:
            with self.events_lock:
                self.events = (batch + self.events)[-EVENTS_BUFFER:]

    def send_events(self, force: bool = False) -> bool:
        """POST /hub/agent/events with the summaries gathered so far: about once a second while a runbook runs
        (called from its wait loop), and before the result. False when the hub did not take them (kept, bounded)."""
        now = time.monotonic()
        if not force and now - self.events_sent < 1.0:
            return True
        self.events_sent = now
        batch = self._take_events()
        if not batch:
            return True
        try:
            self.hub.post("/hub/agent/events", {"events": batch}, timeout=10)
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 400:         # the hub refused the batch itself: do not send it again
                log(f"hub refused {len(batch)} runner events: {exc.read()[:200]!r}")
                return True
            self._give_back(batch)
        except (OSError, urllib.error.URLError, ValueError):
            self._give_back(batch)
        return False

    def figures(self) -> dict:
        cards, err = gpus(self.cfg.get("nvidia_smi", "nvidia-smi"))
        return {"agent_version": VERSION, "hostname": os.uname().nodename, "gpus": cards, "cpu": self.cpu.sample(),
                "memory": memory(), "disk": disks(self.cfg.get("disks", ["/"])),
                "engines": engines(self.cfg.get("engines", [])), "uptime_s": round(time.time() - self.started),
                "errors": [err] if err else []}

    def accept(self, commands) -> None:
        for c in commands or []:
            if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                continue
            fresh = self.state.claim(c["id"])
            try:
                self.hub.post("/hub/agent/ack", {"id": c["id"]}, timeout=10)
            except (OSError, urllib.error.URLError, ValueError):
                pass       # unacknowledged: the hub hands it out again, and the claim above stops a second run
            if fresh:
                self.work.put(c)
            else:
                log(f"command {c['id']} already taken here: acknowledged, not run again")

    def _worker(self) -> None:
        while True:
            c = self.work.get()
            why = check(c, self.cfg)
            if why:
                res = {"status": "refused", "summary": why}
            elif c.get("expires_at") and time.time() > c["expires_at"]:
                res = {"status": "refused", "summary": "expired before it could start"}
            else:
                log(f"running {c['kind']} {c['id']}")
                try:
                    res = run_runbook(c, self.cfg, on_event=lambda s, cid=c["id"]: self._on_event(cid, s),
                                      on_tick=self.send_events)
                except Exception as exc:     # a broken runner setup must not kill the agent
                    res = {"status": "failed", "summary": f"{type(exc).__name__}: {exc}"}
            status = res.pop("status")
            with self.events_lock:
                made = self.event_counts.pop(c["id"], 0)
            if made > EVENTS_PER_COMMAND:
                res["events_dropped"] = made - EVENTS_PER_COMMAND
            self.state.add_result({"id": c["id"], "status": status, "result": res})
            self.flush_results()

    def flush_results(self) -> None:
        if self.events and not self.send_events(force=True):    # the last task summaries go before the result
            return
        for r in self.state.pending():
            try:
                self.hub.post("/hub/agent/result", r, timeout=10)
            except urllib.error.HTTPError as exc:
                if exc.code not in (404, 409):     # 404/409: the hub knows the outcome already, or never will
                    return
            except (OSError, urllib.error.URLError, ValueError):
                return
            self.state.drop(r["id"])

    def cycle(self) -> None:
        reply = self.hub.post("/hub/agent/heartbeat", self.figures(), timeout=10)
        self.interval = float(reply.get("interval_s", self.interval))
        self.accept(reply.get("commands"))
        self.flush_results()
        deadline = time.time() + self.interval
        while (left := deadline - time.time()) > 0.05:
            reply = self.hub.post("/hub/agent/poll", {"wait_s": left}, timeout=left + 10)
            self.accept(reply.get("commands"))

    def run(self, once: bool = False) -> None:
        while True:
            try:
                self.cycle()
                if self.backoff:
                    log("hub reachable again: resynced")
                self.backoff = 0.0
            except urllib.error.HTTPError as exc:
                self._fail(f"hub answered {exc.code}: {exc.read()[:200]!r}")
            except (OSError, urllib.error.URLError, ValueError) as exc:
                self._fail(f"hub unreachable: {exc}")
            if once:
                return

    def _fail(self, msg: str) -> None:
        self.backoff = min(60.0, max(1.0, self.backoff * 2))
        delay = self.backoff * random.uniform(0.5, 1.0)
        log(f"{msg}; retrying in {delay:.1f}s")
        time.sleep(delay)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="homelab node agent")
    p.add_argument("--config", default="/etc/homelab/agent.json")
    p.add_argument("--once", action="store_true", help="one heartbeat cycle, then exit")
    a = p.parse_args(argv)
    with open(a.config) as fh:
        cfg = json.load(fh)
    missing = [k for k in ("hub_url", "node", "token_file") if k not in cfg]
    if missing:
        log(f"{a.config}: missing {', '.join(missing)}")
        return 2
    Agent(cfg).run(once=a.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
