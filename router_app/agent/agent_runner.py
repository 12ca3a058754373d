"""The runbook side of homelab-agent: `ansible-runner run` (argv, never a shell) against this node, and the
per-task summaries read from the runner's job_events while it runs. Standard library only; deployed beside
homelab_agent.py (roles/homelab_agent).

Summaries carry the step (task_start, ok, changed, failed, failed_ignored, unreachable, skipped), the task name and
the host, never a task's output or variables (a result may hold secrets; the full record stays in the node's rotated
artifacts).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

STEPS = {"playbook_on_task_start": "task_start", "runner_on_ok": "ok", "runner_on_failed": "failed",
         "runner_on_unreachable": "unreachable", "runner_on_skipped": "skipped"}
EVENT_FILE = re.compile(r"^(\d+)-[0-9a-f-]+\.json$")


def summarize(ev: dict) -> dict | None:
    """A job event of ansible-runner -> a bounded summary (no task output, no variables), or None to skip it."""
    step = STEPS.get(ev.get("event"))
    if step is None:
        return None
    data = ev.get("event_data") or {}
    if step == "ok" and (data.get("res") or {}).get("changed"):
        step = "changed"
    if step == "failed" and data.get("ignore_errors"):
        step = "failed_ignored"
    return {"seq": ev.get("counter"), "step": step, "task": str(data.get("task") or "")[:200],
            "host": str(data.get("host") or "")[:128] or None}


class EventWatcher:
    """Reads the runner's job_events directory as it grows (files <counter>-<uuid>.json, written as tasks run)."""

    def __init__(self, evdir: str, on_event):
        self.evdir, self.on_event, self.seen = evdir, on_event, set()

    def scan(self) -> None:
        try:
            names = os.listdir(self.evdir)
        except OSError:
            return
        for name in sorted((n for n in names if EVENT_FILE.match(n) and n not in self.seen),
                           key=lambda n: int(EVENT_FILE.match(n).group(1))):
            try:
                with open(os.path.join(self.evdir, name)) as fh:
                    ev = json.load(fh)
            except (OSError, ValueError):
                continue        # still being written: next scan
            self.seen.add(name)
            s = summarize(ev)
            if s is not None:
                self.on_event(s)


def run_runbook(cmd: dict, cfg: dict, on_event=None, on_tick=None) -> dict:
    """ansible-runner run <private dir> -p <kind>.yml, against this node (connection local). `on_event` gets each
    per-task summary while the runbook runs; `on_tick` is called every half second meanwhile (to send them)."""
    rc_cfg = cfg.get("runner", {})
    runner = shutil.which(rc_cfg.get("bin", "ansible-runner"))
    book_dir = rc_cfg.get("runbooks_dir", "/opt/homelab-agent/runbooks")
    if not runner:
        return {"status": "failed", "rc": None, "summary": "ansible-runner is not installed on this node"}
    if not os.path.isfile(os.path.join(book_dir, f"{cmd['kind']}.yml")):
        return {"status": "failed", "rc": None, "summary": f"runbook {cmd['kind']}.yml missing in {book_dir}"}
    pdd = rc_cfg.get("data_dir", "/var/lib/homelab-agent/runner")
    for sub in ("env", "inventory"):
        os.makedirs(os.path.join(pdd, sub), mode=0o700, exist_ok=True)
    project = os.path.join(pdd, "project")
    if os.path.realpath(project) != os.path.realpath(book_dir):
        if os.path.islink(project) or os.path.exists(project):
            os.unlink(project)
        os.symlink(book_dir, project)
    interp = rc_cfg.get("python", sys.executable)
    with open(os.path.join(pdd, "inventory", "hosts"), "w") as fh:
        fh.write(f"localhost ansible_connection=local ansible_python_interpreter={interp}\n")
    extra = dict(rc_cfg.get("extravars", {}))
    extra.update({f"runbook_{k}": v for k, v in cmd["args"].items()})
    extra["runbook_command_id"] = cmd["id"]
    extra["runbook_engines"] = cfg.get("engines", [])
    with open(os.path.join(pdd, "env", "extravars"), "w") as fh:
        json.dump(extra, fh)
    argv = [runner, "run", pdd, "-p", f"{cmd['kind']}.yml", "--ident", cmd["id"],
            "--rotate-artifacts", str(int(rc_cfg.get("rotate_artifacts", 20)))]
    if cmd["args"].get("check"):
        argv.append("--cmdline=--check")      # one token: argparse would take a bare --check for an option
    # Ansible's temporary files inside the runner's own directory: the agent's unit makes everything else read-only
    # (ProtectSystem=strict, ProtectHome=yes), and ansible-core 2.16 (Ubuntu 24.04) puts its remote tmp under the
    # user's passwd home (/root/.ansible/tmp), not $HOME: recover_cuda failed "UNREACHABLE! Failed to create
    # temporary directory" on the lab's Ubuntu 24.04 node.
    tmp_root = os.path.join(pdd, "tmp")
    os.makedirs(tmp_root, mode=0o700, exist_ok=True)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=os.path.join(pdd, "ansible-home"),
               ANSIBLE_LOCAL_TEMP=os.path.join(tmp_root, "local"), ANSIBLE_REMOTE_TMP=os.path.join(tmp_root, "remote"))
    art = os.path.join(pdd, "artifacts", cmd["id"])
    watcher = EventWatcher(os.path.join(art, "job_events"), on_event) if on_event else None
    deadline = time.monotonic() + float(rc_cfg.get("timeout_s", 1800))
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        rc = None
        while rc is None:
            try:
                rc = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    break
            if watcher:
                watcher.scan()
            if on_tick:
                on_tick()
        out.seek(0, os.SEEK_END)
        out.seek(max(0, out.tell() - 2000))
        tail = out.read().decode("utf-8", "replace")
        if rc is None:
            tail = "ansible-runner timed out"
    if watcher:
        watcher.scan()
    failed, status = [], None
    try:
        with open(os.path.join(art, "status")) as fh:
            status = fh.read().strip()
        evdir = os.path.join(art, "job_events")
        for name in sorted(os.listdir(evdir)):
            with open(os.path.join(evdir, name)) as fh:
                ev = json.load(fh)
            if ev.get("event") in ("runner_on_failed", "runner_on_unreachable") and not ev.get("event_data", {}).get(
                    "ignore_errors"):
                failed.append(ev.get("event_data", {}).get("task"))
    except (OSError, ValueError):
        pass
    ok = rc == 0 and status in (None, "successful")
    return {"status": "succeeded" if ok else "failed", "rc": rc, "runner_status": status, "failed_tasks": failed,
            "summary": tail.strip().splitlines()[-1] if tail.strip() else "", "output_tail": tail}
