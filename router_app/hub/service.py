"""The service layer: what the admin API, the CLI (through the API) and a future MCP bridge call.

`Hub` owns the store, the in-memory registry (the request path and the admin views read node state from memory,
never from SQLite or the network), the per-node wake-ups for long-polling agents, and the background sweep that
marks silent nodes stale and expires commands. Hub-side commands (drain, undrain, reload) run here against the
router (`host`); node-side commands wait in the queue for the node's agent.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
import uuid
from typing import Any, Optional

from ..agent import files as agent_files
from . import commands as cmds
from . import drains, progress
from .config import HubSettings
from .errors import HubError
from .registry import Registry
from .store import HubStore

FINAL = ("succeeded", "failed", "refused")
ACK_TIMEOUT_S = 10.0     # a delivered command the agent did not acknowledge in this time is handed out again
MAX_RESULT = 512 * 1024  # bytes of one command's result kept (read_file's 256 KiB as base64 fits)


def default_store_path(access_store_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(access_store_path)), "hub.sqlite3")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Hub:
    def __init__(self, settings: HubSettings, store_path: str, host: Any = None):
        self.settings = settings
        self.store = HubStore(store_path)
        self.host = host                  # the RouterApp: set_drained, reload, runtime, health, logs
        self.registry = Registry(self.store, settings)
        self._wake: dict[str, asyncio.Event] = {}
        self._task: Optional[asyncio.Task] = None
        self._jsonl = None                # the router's events log writer (router-events.jsonl), untapped
        self.heartbeats = 0
        self._sweeps = 0
        self.delivery_latency: list = []  # seconds from queued to delivered, newest last (bounded)
        self.progress_counts: dict = {}   # command id -> command_progress events stored (progress.py)
        self.started_at = time.time()     # hub drains wait one stale_after_s after a start (drains.py)

    # ----------------------------------------------------------------------------- lifecycle
    def tap(self, logs) -> None:
        """Every router event (health up and down, drains, reloads) also lands in the hub's events table."""
        log = logs.events
        orig = self._jsonl if getattr(log.write, "_hub_tap", False) else log.write
        self._jsonl = orig

        def write(rec: dict) -> None:
            orig(rec)
            try:
                kind = rec.get("event", "router")
                if kind == "health":
                    kind = "route_up" if rec.get("healthy") else "route_down"
                data = {k: v for k, v in rec.items() if k not in ("event", "route")}
                self.store.add_event(time.time(), kind, None, rec.get("route"), data)
            except Exception:
                pass
        write._hub_tap = True  # type: ignore[attr-defined]
        log.write = write

    def update(self, settings: HubSettings) -> None:
        self.settings = settings
        self.registry.settings = settings

    async def start(self) -> None:
        self.started_at = time.time()
        self.event("hub_start", data={"nodes": len(self.registry.nodes), "store": self.store.path})
        self._task = asyncio.get_running_loop().create_task(self._sweeper())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self.store.close()

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.sweep()
            except Exception:
                pass

    def sweep(self, now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        for name in self.registry.find_stale(now):
            silent = round(now - self.registry.nodes[name]["last_seen"], 1)
            self.event("node_stale", node=name, data={"silent_s": silent})
        self.apply_drains(now)
        for cid, node, kind in self.store.requeue_unacked(now, ACK_TIMEOUT_S):
            self.event("command_requeued", node=node, data={"command": cid, "command_kind": kind,
                                                             "detail": "delivered but not acknowledged"})
            ev = self._wake.get(node)
            if ev is not None:
                ev.set()
        for cid, node, kind, st in self.store.expire(now):
            self.event("command_expired" if st == "queued" else "command_lost", node=node,
                       data={"command": cid, "command_kind": kind,
                             "detail": "expired before the node took it" if st == "queued"
                             else "delivered, but no result came back before expiry (never re-sent)"})
        self._sweeps += 1
        if self._sweeps % 600 == 0:
            self.store.trim_events(self.settings.events_keep)

    def apply_drains(self, now: Optional[float] = None) -> tuple[dict, dict]:
        """Drains the routes of stale nodes and undrains those of nodes back (drains.plan), with events."""
        rt = getattr(self.host, "runtime", None)
        states = getattr(rt, "states", None)
        if not states:
            return {}, {}
        now = time.time() if now is None else now
        current = {r: st.hub_drained for r, st in states.items() if getattr(st, "hub_drained", None)}
        drain, undrain = drains.plan(self.settings.drain_stale_routes, self.registry.nodes, self.registry.routes_of,
                                     states, current, now, self.settings.stale_after_s, self.started_at)
        for r, n in drain.items():
            states[r].hub_drained = n
            self.event("hub_drain", node=n, route=r, data={"detail": f"node {n} is stale: auto-routing skips {r} "
                                                                      "until its agent beats again"})
        for r, n in undrain.items():
            states[r].hub_drained = None
            why = "node back" if self.settings.drain_stale_routes else "hub.drain_stale_routes is off"
            self.event("hub_undrain", node=n, route=r,
                       data={"detail": why, "operator_drain_kept": bool(states[r].drained)})
        if drain or undrain:
            rt.refresh_drained()
        return drain, undrain

    # ----------------------------------------------------------------------------- events
    def event(self, kind: str, node: Optional[str] = None, route: Optional[str] = None,
              data: Optional[dict] = None) -> None:
        data = data or {}
        self.store.add_event(time.time(), kind, node, route, data)
        if self._jsonl:
            rec = {"ts": _iso(), "event": kind, **data}
            if node:
                rec["node"] = node
            if route:
                rec["route"] = route
            try:
                self._jsonl(rec)
            except Exception:
                pass

    def events(self, **kw) -> list:
        return self.store.events(**kw)

    # ----------------------------------------------------------------------------- agents
    def authenticate(self, node: Any, token: Optional[str]) -> str:
        entry = self.settings.agents.get(node) if isinstance(node, str) else None
        if entry is None or not token or not hmac.compare_digest(token_hash(token), entry.token_sha256):
            raise HubError(401, "agent authentication failed (unknown node or wrong token)", "invalid_agent_token")
        return node

    def heartbeat(self, node: str, payload: dict) -> dict:
        self.heartbeats += 1
        came_back = self.registry.beat(node, payload, time.time())
        if came_back is not None:
            self.event("node_up", node=node, data={"was": came_back})
            self.apply_drains()
        return {"interval_s": self.settings.heartbeat_interval_s, "commands": self.take(node),
                "server_time": time.time()}

    def take(self, node: str) -> list:
        now = time.time()
        out = self.store.take_for_node(node, now)
        for c in out:
            self.delivery_latency.append(now - c["created_at"])
            self.event("command_delivered", node=node, data={"command": c["id"], "command_kind": c["kind"]})
        del self.delivery_latency[:-1000]
        return [{"id": c["id"], "kind": c["kind"], "args": c["args"], "expires_at": c["expires_at"]} for c in out]

    def runner_events(self, node: str, batch: Any) -> dict:
        """Per-task summaries of a running runbook (agent_runner.py) -> `command_progress` events. Bounded: at most
        progress.PER_BATCH per call and progress.PER_COMMAND per command; only for this node's commands that are
        delivered or running; anything else in the batch is dropped and counted."""
        taken, dropped = progress.accept(self, node, batch)
        return {"accepted": taken, "dropped": dropped}

    def ack(self, node: str, cid: Any) -> dict:
        if not isinstance(cid, str):
            raise HubError(400, "id must be a string", "invalid_id", "id")
        if self.store.ack(cid, node, time.time()):
            return {"id": cid, "status": "running"}
        known = self.store.get_command(cid)
        if known is None or known["node"] != node:
            raise HubError(404, f"no command {cid} for node {node}", "unknown_command", "id")
        return {"id": cid, "status": known["status"]}

    async def poll(self, node: str, wait_s: float, gone=None) -> list:
        """Long-poll: answers at once when commands wait, else when one is queued or wait_s passes. `gone` (an async
        callable) says whether the agent hung up meanwhile: then nothing is taken for a reply nobody reads."""
        got = self.take(node)
        if got:
            return got
        ev = self._wake.setdefault(node, asyncio.Event())
        ev.clear()
        try:
            await asyncio.wait_for(ev.wait(), timeout=max(0.0, min(wait_s, self.settings.long_poll_s)))
        except asyncio.TimeoutError:
            return []
        if gone is not None and await gone():
            return []
        return self.take(node)

    def result(self, node: str, cid: Any, status: Any, result: Any) -> dict:
        if status not in FINAL:
            raise HubError(400, f"status must be one of {', '.join(FINAL)}", "invalid_status", "status")
        if not isinstance(cid, str):
            raise HubError(400, "id must be a string", "invalid_id", "id")
        if not isinstance(result, dict):
            result = {"detail": str(result)}
        size = len(json.dumps(result, default=str, ensure_ascii=False))
        if size > MAX_RESULT:
            status, result = "failed", {"summary": f"result of {size} bytes is over the hub's {MAX_RESULT}-byte "
                                                   "limit; dropped", "result_bytes": size}
        cmd = self.store.finish(cid, status, result, time.time(), from_status=("delivered", "running"), node=node)
        self.progress_counts.pop(cid, None)
        if cmd is None:
            known = self.store.get_command(cid)
            if known is None or known["node"] != node:
                raise HubError(404, f"no command {cid} for node {node}", "unknown_command", "id")
            raise HubError(409, f"command {cid} is already {known['status']}", "command_closed", "id")
        self.event(f"command_{status}", node=node, data={"command": cid, "command_kind": cmd["kind"],
                                                          "rc": result.get("rc"), "summary": result.get("summary")})
        if cmd["kind"] == "recover_cuda":
            self.event("recovery_succeeded" if status == "succeeded" else "recovery_failed", node=node,
                       data={"command": cid, "routes": self.registry.routes_of(node)})
            health = getattr(self.host, "health", None)
            if status == "succeeded" and health is not None:    # bring the node's routes back without waiting
                asyncio.get_running_loop().create_task(health.check_all())
        return cmd

    # ----------------------------------------------------------------------------- admin
    def nodes(self) -> list:
        out = self.registry.view(time.time(), self.store)
        states = getattr(getattr(self.host, "runtime", None), "states", None) or {}
        for item in out:
            item["drained_routes"] = sorted(r for r, st in states.items()
                                            if getattr(st, "hub_drained", None) == item["node"])
        return out

    def node_of_route(self, route: str) -> str:
        for name in self.settings.agents:
            if route in self.registry.routes_of(name):
                return name
        raise HubError(404, f"no node serves route '{route}'", "unknown_route", "route")

    async def submit(self, kind: Any, args: Any = None, node: Any = None, route: Any = None,
                     requested_by: str = "admin", ttl_s: Any = None) -> dict:
        try:
            clean = cmds.validate(kind, args)
        except cmds.CommandRefused as exc:
            self.event("command_refused", node=node if isinstance(node, str) else None,
                       data={"command_kind": str(kind)[:64], "reason": exc.message, "requested_by": requested_by})
            raise HubError(400, exc.message, "command_refused", exc.param) from None
        spec = cmds.KINDS[kind]
        ttl = self._ttl(ttl_s)
        now = time.time()
        cmd = {"id": "cmd_" + uuid.uuid4().hex, "kind": kind, "args": clean, "requested_by": requested_by,
               "created_at": now, "expires_at": now + ttl, "status": "queued", "node": None}
        if spec.target == "hub":
            return await self._run_here(cmd)
        if route is not None and node is None:
            if not isinstance(route, str):
                raise HubError(400, "route must be a string", "invalid_route", "route")
            node = self.node_of_route(route)
        if not isinstance(node, str) or node not in self.settings.agents:
            raise HubError(404 if isinstance(node, str) else 400,
                           f"unknown node {node!r}; nodes: {', '.join(self.settings.agents) or 'none configured'}",
                           "unknown_node", "node")
        cmd["node"] = node
        if kind in cmds.FILE_KINDS:
            self._file_gate(kind, clean, node, now, requested_by)
        if not self.registry.online(node, now):
            cmd["detail"] = "waiting: node offline; runs when its agent reconnects, unless it expires first"
        self.store.add_command(cmd)
        self.event("command_queued", node=node, data={"command": cmd["id"], "command_kind": kind, "args": clean,
                                                       "requested_by": requested_by})
        ev = self._wake.get(node)
        if ev is not None:
            ev.set()
        return self.store.get_command(cmd["id"])

    def _file_gate(self, kind: str, args: dict, node: str, now: float, requested_by: str) -> None:
        """list_files/read_file: interactive reads, so an offline node is refused at once (nothing queues), and the
        path must lie inside the allowlist the node's agent reported. The agent checks again on the realpath."""
        why, code, status = None, "path_not_allowed", 403
        allowed = self.registry.infra_paths(node)
        if not self.registry.online(node, now):
            why, code, status = f"node {node} is offline (no heartbeat); {kind} needs a connected agent", \
                "node_offline", 409
        elif not agent_files.within(args["path"], allowed):
            listed = ", ".join(allowed) or "empty: homelab_agent_infra_paths"
            why = f"{args['path']} is outside the infra allowlist of node {node} ({listed})"
        elif agent_files.secret_name(args["path"]):
            why = f"{args['path']} looks like a secret (its name); never served"
        if why:
            self.event("command_refused", node=node, data={"command_kind": kind, "args": args, "reason": why,
                                                            "requested_by": requested_by})
            raise HubError(status, why, code, "args.path" if code == "path_not_allowed" else "node")

    def _ttl(self, ttl_s: Any) -> float:
        if ttl_s is None:
            return self.settings.command_ttl_s
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not 0 < ttl_s <= self.settings.max_command_ttl_s:
            raise HubError(400, f"ttl_s must be a number in (0, {self.settings.max_command_ttl_s:g}]", "invalid_ttl",
                           "ttl_s")
        return float(ttl_s)

    async def _run_here(self, cmd: dict) -> dict:
        self.store.add_command(cmd)
        kind, args = cmd["kind"], cmd["args"]
        try:
            if kind in ("drain_route", "undrain_route"):
                res = self.host.set_drained(args["route"], kind == "drain_route")
                status = "succeeded"
            else:
                ok, errors = await self.host.reload()
                res = {"reloaded": ok, "errors": [str(e) for e in errors]}
                status = "succeeded" if ok else "failed"
        except Exception as exc:    # ApiError(404) for an unknown route, included
            res, status = {"detail": getattr(exc, "message", str(exc))}, "failed"
        self.store.finish(cmd["id"], status, res, time.time(), from_status=("queued",))
        self.event(f"command_{status}", route=args.get("route"),
                   data={"command": cmd["id"], "command_kind": kind, "requested_by": cmd["requested_by"]})
        return self.store.get_command(cmd["id"])

    async def recover_cuda(self, node: Any = None, route: Any = None, requested_by: str = "admin",
                           ttl_s: Any = None) -> dict:
        if node is None and route is None:
            raise HubError(400, "give node or route", "missing_target", "node")
        cmd = await self.submit("recover_cuda", {}, node=node, route=route, requested_by=requested_by, ttl_s=ttl_s)
        self.event("recovery_requested", node=cmd["node"], route=route if isinstance(route, str) else None,
                   data={"command": cmd["id"], "requested_by": requested_by})
        return cmd

    def commands(self, node=None, status=None, limit=100) -> list:
        return self.store.list_commands(node, status, limit)

    def command(self, cid: str) -> dict:
        c = self.store.get_command(cid)
        if c is None:
            raise HubError(404, f"no command {cid}", "unknown_command", "id")
        return c


def _iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"
