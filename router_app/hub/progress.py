"""Runner events streamed from the agents: per-task summaries of a running runbook become `command_progress` events
(GET /admin/events?kind=command_progress, filtered by node; each names its command).

What an agent sends (router_app/agent/agent_runner.py): `{"events": [{"id": <command id>, "seq": int,
"step": task_start|ok|changed|failed|failed_ignored|unreachable|skipped, "task": str, "host": str}]}`. The hub keeps
only those fields, clipped; a summary for a command of another node, or one not delivered/running, or of an
unknown step, is dropped; so is anything past PER_BATCH per call or PER_COMMAND per command.
"""
from __future__ import annotations

from typing import Any

from .errors import HubError

PER_BATCH = 100
PER_COMMAND = 250
STEPS = frozenset({"task_start", "ok", "changed", "failed", "failed_ignored", "unreachable", "skipped"})


def accept(hub, node: str, batch: Any) -> tuple[int, int]:
    if not isinstance(batch, list):
        raise HubError(400, "events must be a list", "invalid_events", "events")
    taken = dropped = 0
    known: dict = {}
    for item in batch:
        if taken >= PER_BATCH:
            dropped += 1
            continue
        cid = item.get("id") if isinstance(item, dict) else None
        step = item.get("step") if isinstance(item, dict) else None
        if not isinstance(cid, str) or step not in STEPS:
            dropped += 1
            continue
        if cid not in known:
            c = hub.store.get_command(cid)
            known[cid] = c if c and c["node"] == node and c["status"] in ("delivered", "running") else None
        cmd = known[cid]
        n = hub.progress_counts.get(cid, 0)
        if cmd is None or n >= PER_COMMAND:
            dropped += 1
            continue
        hub.progress_counts[cid] = n + 1
        seq = item.get("seq")
        hub.event("command_progress", node=node, data={
            "command": cid, "command_kind": cmd["kind"], "step": step,
            "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            "task": str(item.get("task") or "")[:200], "host": str(item.get("host") or "")[:128] or None})
        taken += 1
    return taken, dropped
