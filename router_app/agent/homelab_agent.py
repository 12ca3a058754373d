#!/usr/bin/env python3
"""homelab-agent: heartbeats a node's figures to the hub and runs the commands it hands back. Standard library only,
so it deploys as three files on any Linux node (roles/homelab_agent: this one, figures.py for the heartbeat's figures,
files.py for the read-only file commands) without the router's dependencies.

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
* `list_files` / `read_file` (the inventory's homelab_agent_infra_paths allowlist, `infra_paths` in agent.json) are
  answered by files.py in-process on their own worker (never queued behind a runbook), no shell: the allowlist is
  re-checked on the realpath; secret-looking files (root-owned 0600, *.env, keys) and non-regular files are refused.
  The allowlist rides on each heartbeat.
* At most once: the agent acknowledges each command it takes (/hub/agent/ack); the hub hands an unacknowledged
  one out again, which is safe because a command id is written to the state file (fsync) before it starts; an id
  seen before is never run again (after a crash mid-run the hub marks it `lost` at expiry, never re-sent). Results
  not yet accepted are kept in the state file and re-sent until the hub takes them.
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

try:                          # in the package (tests, the router's imports) ...
    from . import agent_runner, figures, files
except ImportError:           # ... or run as a script from the install dir: its sibling files, by path
    import importlib.util

    def _sibling(name: str):
        here = os.path.dirname(os.path.abspath(__file__))
        spec = importlib.util.spec_from_file_location(f"homelab_agent_{name}", os.path.join(here, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    agent_runner, figures, files = _sibling("agent_runner"), _sibling("figures"), _sibling("files")
Cpu, disks, engines, gpus, memory = figures.Cpu, figures.disks, figures.engines, figures.gpus, figures.memory

run_runbook = agent_runner.run_runbook

VERSION = "3"
EVENTS_PER_COMMAND = 200      # per-task summaries streamed per command; more are counted, not sent
EVENTS_BUFFER = 500           # summaries waiting for the hub (hub down: the oldest go first)
NODE_KINDS = {"restart_engine": {"engine"}, "recover_cuda": set(), "converge_node": {"check"},
              "list_files": {"path"}, "read_file": {"path", "max_bytes"}}
FILE_KINDS = ("list_files", "read_file")      # answered by files.py, read-only, no runbook
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def log(msg: str) -> None:
    print(f"homelab-agent: {msg}", file=sys.stderr, flush=True)


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
    if kind in FILE_KINDS:
        why = files.path_problem(args.get("path"))
        if why:
            return f"{kind}: {why}"
        mb = args.get("max_bytes", files.DEFAULT_READ)
        if isinstance(mb, bool) or not isinstance(mb, int) or not 1 <= mb <= files.MAX_READ:
            return f"{kind}: max_bytes must be an integer in [1, {files.MAX_READ}]"
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
        data = json.dumps(dict(body, node=self.node), ensure_ascii=False).encode()
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
        self.work: Queue = Queue()        # runbooks, one at a time
        self.reads: Queue = Queue()       # list_files/read_file: never stuck behind a long runbook
        self.backoff = 0.0
        self.started = time.time()
        self.events_lock = threading.Lock()
        self.events: list = []           # [{"id": cid, ...summary}], sent with the next heartbeat or poll
        self.event_counts: dict = {}     # cid -> summaries made (bounded by EVENTS_PER_COMMAND)
        self.events_sent = 0.0
        for q in (self.work, self.reads):
            threading.Thread(target=self._worker, args=(q,), daemon=True).start()

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
                "infra_paths": list(self.cfg.get("infra_paths") or []), "errors": [err] if err else []}

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
                (self.reads if c.get("kind") in FILE_KINDS else self.work).put(c)
            else:
                log(f"command {c['id']} already taken here: acknowledged, not run again")

    def _worker(self, queue: Queue) -> None:
        while True:
            c = queue.get()
            why = check(c, self.cfg)
            if why:
                res = {"status": "refused", "summary": why}
            elif c.get("expires_at") and time.time() > c["expires_at"]:
                res = {"status": "refused", "summary": "expired before it could start"}
            elif c["kind"] in FILE_KINDS:
                try:
                    res = files.run(c, self.cfg.get("infra_paths") or [])
                except Exception as exc:     # an unexpected OS error answers the command, never kills the agent
                    res = {"status": "failed", "summary": f"{type(exc).__name__}: {exc}"}
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
