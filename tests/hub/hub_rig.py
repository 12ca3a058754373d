"""The hub tests' rig: a real router process with the hub on, real homelab-agent processes, the nvidia-smi test double,
ansible-runner driving the repository's runbooks (connection local; recover-cuda itself is a recording double,
since no GPU is here)."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "router_app" / "examples" / "four-node.yaml"
AGENT = ROOT / "router_app" / "agent" / "homelab_agent.py"
FAKE_SMI = ROOT / "tests" / "doubles" / "fake-nvidia-smi"
ADMIN_KEY = "hub-test-admin-key"
BIN = pathlib.Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ, PYTHONPATH=str(ROOT), HUB_TEST_ADMIN_KEY=ADMIN_KEY,
             PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return e


class Rig:
    def __init__(self, tmp: pathlib.Path, stale_after_s: float = 3.0, mutate=None, extra_env=None):
        self.extra_env = dict(extra_env or {})
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = {"gpu-a": "tok-a-" + "x" * 40, "gpu-b": "tok-b-" + "y" * 40}
        cfg = yaml.safe_load(EXAMPLE.read_text())
        dead = free_port()      # nothing listens: engines are not what these tests are about
        for r in cfg["routes"].values():
            r["url"] = f"http://127.0.0.1:{dead}/v1"
            r.pop("api_key_env", None)
        cfg.update(admin_key_env="HUB_TEST_ADMIN_KEY", log_dir=str(tmp / "logs"), store_path=str(tmp / "access.db"),
                   health={"interval_s": 3600, "timeout_s": 1})
        cfg["hub"] = {"enabled": True, "heartbeat_interval_s": 1, "stale_after_s": stale_after_s,
                      "agents": {n: {"token_sha256": hashlib.sha256(t.encode()).hexdigest(),
                                     "routes": ["eyes"] if n == "gpu-a" else []} for n, t in self.tokens.items()}}
        if mutate:
            mutate(cfg)
        self.cfg_path = tmp / "router.yaml"
        self.cfg_path.write_text(yaml.safe_dump(cfg))
        self.router = None
        self.agents: dict = {}
        self.infra_paths: dict = {}       # node -> the agent's file allowlist (homelab_agent_infra_paths)
        self.recover_log = tmp / "recover-cuda.calls"
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)

    # ------------------------------------------------------------------ router
    def start_router(self) -> None:
        self.router = subprocess.Popen([sys.executable, "-m", "router_app", "serve", "--config", str(self.cfg_path),
                                        "--port", str(self.port)], cwd=ROOT, env={**env(), **self.extra_env},
                                       stdout=subprocess.DEVNULL, stderr=open(self.tmp / "router.err", "ab"))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.router.poll() is None, (self.tmp / "router.err").read_text()
            time.sleep(0.1)
        raise AssertionError("router did not start")

    def stop_router(self, sig=signal.SIGTERM) -> None:
        if self.router and self.router.poll() is None:
            self.router.send_signal(sig)
            self.router.wait(15)
        self.router = None

    # ------------------------------------------------------------------ agents
    def agent_config(self, node: str, token: str | None = None) -> pathlib.Path:
        d = self.tmp / f"agent-{node}"
        d.mkdir(exist_ok=True)
        tok = d / "token"
        tok.write_text(token or self.tokens[node])
        os.chmod(tok, 0o600)
        rec = d / "recover-cuda-double"     # TEST DOUBLE for the gpu_watchdog's recover-cuda: records each call
        rec.write_text(f"#!/bin/sh\necho \"$*\" >> {self.recover_log}\necho recovered\n")
        rec.chmod(rec.stat().st_mode | stat.S_IXUSR)
        csv = d / "gpus.csv"
        csv.write_text("GPU-5c1f8b7e-0000-4a4a-9d9d-000000004090, 00000000:01:00.0, NVIDIA GeForce RTX 4090, 24564, 20100, 87, 66, 301.5\n")
        cfg = {"hub_url": self.url, "node": node, "token_file": str(tok), "interval_s": 1,
               "nvidia_smi": str(FAKE_SMI), "disks": ["/"], "state_file": str(d / "state.json"),
               "engines": [{"name": "vllm-eyes", "unit": "vllm-eyes.service", "route": "eyes"}],
               "infra_paths": self.infra_paths.get(node, []),
               "runner": {"bin": str(BIN / "ansible-runner"), "runbooks_dir": str(ROOT / "playbooks" / "runbooks"),
                          "data_dir": str(d / "runner"), "python": sys.executable, "rotate_artifacts": 3,
                          "timeout_s": 120,
                          "extravars": {"runbook_become": False, "runbook_recover_cuda_command": [str(rec)]}}}
        path = d / "agent.json"
        path.write_text(json.dumps(cfg))
        return path

    def start_agent(self, node: str, token: str | None = None, wrap: tuple = ()) -> subprocess.Popen:
        """`wrap`: a command prefix for the agent process (e.g. a mount namespace with a read-only home)."""
        path = self.agent_config(node, token)
        e = env()
        e["FAKE_NVIDIA_SMI_CSV"] = str(self.tmp / f"agent-{node}" / "gpus.csv")
        p = subprocess.Popen([*wrap, sys.executable, str(AGENT), "--config", str(path)], env=e, cwd=self.tmp,
                             stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"agent-{node}.err", "ab"))
        self.agents[node] = p
        return p

    def stop_agent(self, node: str) -> None:
        p = self.agents.pop(node, None)
        if p and p.poll() is None:
            p.terminate()
            p.wait(10)

    # ------------------------------------------------------------------ helpers
    def node(self, name: str) -> dict:
        return {n["node"]: n for n in self.admin.get("/admin/nodes").json()["nodes"]}[name]

    def wait(self, pred, timeout: float = 30, what: str = "condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = pred()
                if last:
                    return last
            except (httpx.HTTPError, KeyError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    def command(self, cid: str) -> dict:
        return self.admin.get(f"/admin/commands/{cid}").json()

    def events(self, **q) -> list:
        return self.admin.get("/admin/events", params=q).json()["events"]

    def close(self) -> None:
        for n in list(self.agents):
            self.stop_agent(n)
        self.stop_router()
        self.admin.close()
