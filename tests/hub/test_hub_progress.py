"""Runner events streamed (issue 13 item 3): the agent reads ansible-runner's job_events while a runbook runs and
sends per-task summaries, which land in the hub's events with the command id before the result. A real agent
process, real ansible-runner and the repository's recover_cuda runbook (recover-cuda itself is the rig's recording
double, slowed down here so the run is observable mid-way)."""
from __future__ import annotations

import importlib.util

import httpx

from hub_rig import AGENT


def _slow_double(rig, seconds: float) -> None:
    rec = rig.tmp / "agent-gpu-a" / "recover-cuda-double"
    rec.write_text(f"#!/bin/sh\nsleep {seconds}\necho \"$*\" >> {rig.recover_log}\necho recovered\n")


def test_task_summaries_arrive_while_the_runbook_runs(rig):
    rig.start_agent("gpu-a")
    _slow_double(rig, 4)
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="gpu-a healthy")
    cid = rig.admin.post("/admin/recover-cuda", json={"node": "gpu-a"}).json()["id"]

    def progress():
        return [e for e in rig.events(kind="command_progress") if e["command"] == cid]
    # mid-run: the long task has started and the command is not finished yet
    rig.wait(lambda: any(e["step"] == "task_start" and e["task"] == "Run recover-cuda" for e in progress()),
             timeout=60, what="task_start of the long task")
    assert rig.command(cid)["status"] == "running"
    done = rig.wait(lambda: (c := rig.command(cid))["status"] in ("succeeded", "failed") and c, timeout=60,
                    what="result")
    assert done["status"] == "succeeded", done
    steps = [(e["step"], e["task"]) for e in progress()]
    assert ("ok", "Refuse to run on more than one node at a time") in steps
    assert ("changed", "Run recover-cuda") in steps and ("ok", "Show what it did") in steps
    assert all(e["node"] == "gpu-a" and e["command_kind"] == "recover_cuda" for e in progress())
    assert all(e["host"] == "localhost" for e in progress() if e["step"] != "task_start")
    assert not any("stdout" in e or "res" in e for e in progress())     # summaries only, never task output
    evs = rig.events(node="gpu-a")
    ids = {e["kind"]: e["id"] for e in evs if e.get("command") == cid and e["kind"] != "command_progress"}
    assert max(e["id"] for e in progress()) < ids["command_succeeded"]     # every summary before the result


def test_hub_refuses_what_is_not_its_own(rig):
    auth = {"Authorization": f"Bearer {rig.tokens['gpu-a']}"}
    cid = rig.admin.post("/admin/recover-cuda", json={"node": "gpu-b", "ttl_s": 30}).json()["id"]   # b's command
    r = httpx.post(rig.url + "/hub/agent/events", headers=auth, json={"node": "gpu-a", "events": [
        {"id": cid, "step": "ok", "task": "x"}, {"id": "cmd_nope", "step": "ok"}, {"id": cid, "step": "rm -rf"}, 7]})
    assert r.status_code == 200 and r.json() == {"accepted": 0, "dropped": 4}
    bad = httpx.post(rig.url + "/hub/agent/events", headers=auth, json={"node": "gpu-a", "events": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_events"
    assert httpx.post(rig.url + "/hub/agent/events", json={"node": "gpu-a", "events": []}).status_code == 401
    assert rig.events(kind="command_progress") == []


def test_summaries_are_bounded_and_carry_no_output():
    spec = importlib.util.spec_from_file_location("homelab_agent_file2", AGENT)
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    run = agent.agent_runner
    ev = {"event": "runner_on_ok", "counter": 7, "event_data": {"task": "t" * 500, "host": "h",
                                                                "res": {"changed": True, "stdout": "secret"}}}
    assert run.summarize(ev) == {"seq": 7, "step": "changed", "task": "t" * 200, "host": "h"}
    assert run.summarize({"event": "verbose", "event_data": {}}) is None
    assert run.summarize({"event": "runner_on_failed", "event_data": {"ignore_errors": True}})["step"] == \
        "failed_ignored"
    a = agent.Agent.__new__(agent.Agent)       # the buffer alone, no threads, no hub
    import threading
    a.events_lock, a.events, a.event_counts = threading.Lock(), [], {}
    for i in range(agent.EVENTS_PER_COMMAND + 50):
        a._on_event("c1", {"seq": i, "step": "ok"})
    assert len(a.events) == agent.EVENTS_PER_COMMAND and a.event_counts["c1"] == agent.EVENTS_PER_COMMAND + 50


def test_runbook_runs_with_home_read_only_as_the_unit_makes_it(rig, tmp_path):
    """roles/homelab_agent's unit has ProtectHome=yes and ProtectSystem=strict; ansible-core 2.16 (Ubuntu 24.04) puts
    its remote tmp under the passwd home whatever $HOME says. The lab's Ubuntu 24.04 node failed recover_cuda with
    "Failed to create temporary directory" until the runner got its own ANSIBLE_REMOTE_TMP/LOCAL_TEMP. Here the
    agent runs in a mount namespace where the passwd home and $HOME are read-only bind mounts."""
    import os
    import pwd
    import shutil
    home = pwd.getpwuid(os.getuid()).pw_dir
    unshare = shutil.which("unshare")
    assert unshare and os.geteuid() == 0, "this test needs util-linux's unshare and root (CI runs as root)"
    script = f"mount --bind {home} {home} && mount -o remount,bind,ro {home} && exec \"$@\""
    rig.start_agent("gpu-a", wrap=(unshare, "-m", "--propagation", "private", "sh", "-c", script, "agent"))
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="gpu-a healthy")
    cid = rig.admin.post("/admin/recover-cuda", json={"node": "gpu-a"}).json()["id"]
    done = rig.wait(lambda: (c := rig.command(cid))["status"] in ("succeeded", "failed") and c, timeout=90,
                    what="result")
    assert done["status"] == "succeeded", done
