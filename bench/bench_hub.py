#!/usr/bin/env python3
"""Control-plane benchmark: N simulated agents heartbeating to the hub in a real router process.

Starts `python -m router_app serve` with the hub on and N agents configured, then runs N simulated agents in one
asyncio process (aiohttp): each POSTs a realistic heartbeat (2 GPUs, CPU, memory, disk, engines) every
--interval seconds and long-polls /hub/agent/poll in between, as router_app/agent/homelab_agent.py does. After a
warm-up, it measures the router process's CPU time over --duration seconds (from /proc/<pid>/stat) and queues
--commands recover_cuda commands through POST /admin/commands at random nodes, timing each from the POST to the
moment the simulated agent receives it (acknowledged and reported at once, like a real agent).

    .venv/bin/python bench/bench_hub.py [--agents 200] [--interval 5] [--duration 60] [--commands 100]

Figures: hub CPU as % of one core, heartbeats/s, command delivery latency p50/p95/max. Issue 13's targets:
< 5 % of one core for 200 agents at 5 s, <= 2 s p95 delivery.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_KEY = "bench-admin-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def payload(i: int) -> dict:
    return {"agent_version": "1", "hostname": f"node-{i}", "uptime_s": 1000,
            "gpus": [{"index": g, "name": "NVIDIA RTX 4090", "uuid": f"GPU-{i}-{g}", "memory_total_mib": 24564,
                      "memory_used_mib": random.randint(0, 24000), "utilization_pct": random.randint(0, 100),
                      "temperature_c": 60, "power_w": 250.5} for g in range(2)],
            "cpu": {"percent": 12.5, "count": 16, "load1": 1.2},
            "memory": {"total_bytes": 64 << 30, "available_bytes": 40 << 30},
            "disk": [{"path": "/", "total_bytes": 1 << 40, "free_bytes": 1 << 39}],
            "engines": [{"name": "vllm-x", "unit": "vllm-x.service", "route": "eyes", "active": "active",
                         "healthy": True}], "errors": []}


class Sim:
    def __init__(self, url: str, n: int, interval: float):
        self.url, self.n, self.interval = url, n, interval
        self.received: dict[str, float] = {}
        self.heartbeats = 0
        self.errors = 0
        self.stop = False

    async def agent(self, session, i: int):
        node, token = f"node-{i:03d}", f"token-{i:03d}-" + "z" * 32
        h = {"Authorization": f"Bearer {token}"}
        await asyncio.sleep(random.uniform(0, self.interval))
        while not self.stop:
            deadline = time.time() + self.interval
            try:
                async with session.post(self.url + "/hub/agent/heartbeat", json={"node": node, **payload(i)},
                                        headers=h) as r:
                    body = await r.json()
                self.heartbeats += 1
                await self.handle(session, node, h, body.get("commands", []))
                while (left := deadline - time.time()) > 0.05 and not self.stop:
                    async with session.post(self.url + "/hub/agent/poll", json={"node": node, "wait_s": left},
                                            headers=h) as r:
                        body = await r.json()
                    await self.handle(session, node, h, body.get("commands", []))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self.errors += 1
                await asyncio.sleep(1)

    async def handle(self, session, node, h, cmds):
        for c in cmds:
            self.received[c["id"]] = time.time()
            async with session.post(self.url + "/hub/agent/ack", json={"node": node, "id": c["id"]}, headers=h):
                pass
            async with session.post(self.url + "/hub/agent/result", json={"node": node, "id": c["id"],
                                    "status": "succeeded", "result": {"rc": 0}}, headers=h):
                pass


async def run(args, url: str, pid: int) -> dict:
    sim = Sim(url, args.agents, args.interval)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as session:
        tasks = [asyncio.create_task(sim.agent(session, i)) for i in range(args.agents)]
        await asyncio.sleep(args.warmup)
        hb0, c0, t0 = sim.heartbeats, cpu_seconds(pid), time.time()
        sent: dict[str, float] = {}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        gap = args.duration / max(1, args.commands)
        for _ in range(args.commands):
            node = f"node-{random.randrange(args.agents):03d}"
            t = time.time()
            async with session.post(url + "/admin/commands", json={"kind": "recover_cuda", "node": node},
                                    headers=admin) as r:
                cid = (await r.json())["id"]
            sent[cid] = t
            await asyncio.sleep(gap)
        left = args.duration - (time.time() - t0)
        if left > 0:
            await asyncio.sleep(left)
        c1, t1, hb1 = cpu_seconds(pid), time.time(), sim.heartbeats
        await asyncio.sleep(min(5, args.interval))      # stragglers
        sim.stop = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted(sim.received[c] - sent[c] for c in sent if c in sim.received)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"agents": args.agents, "interval_s": args.interval, "window_s": round(t1 - t0, 1),
            "hub_cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 2),
            "heartbeats_per_s": round((hb1 - hb0) / (t1 - t0), 1), "client_errors": sim.errors,
            "commands": len(sent), "delivered": len(lat), "latency_p50_s": round(statistics.median(lat), 3) if lat
            else None, "latency_p95_s": round(pct(0.95), 3), "latency_max_s": round(lat[-1], 3) if lat else None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--commands", type=int, default=100)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-hub-")
    cfg = yaml.safe_load(open(os.path.join(ROOT, "router_app", "examples", "four-node.yaml")))
    dead = free_port()
    for r in cfg["routes"].values():
        r["url"] = f"http://127.0.0.1:{dead}/v1"
        r.pop("api_key_env", None)
    cfg.update(admin_key_env="BENCH_ADMIN_KEY", log_dir=os.path.join(tmp, "logs"),
               store_path=os.path.join(tmp, "access.db"), health={"interval_s": 3600, "timeout_s": 1})
    cfg["hub"] = {"enabled": True, "heartbeat_interval_s": args.interval, "stale_after_s": 4 * args.interval,
                  "agents": {f"node-{i:03d}": {"token_sha256": hashlib.sha256(
                      (f"token-{i:03d}-" + "z" * 32).encode()).hexdigest()} for i in range(args.agents)}}
    path = os.path.join(tmp, "router.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    port = free_port()
    env = dict(os.environ, BENCH_ADMIN_KEY=ADMIN_KEY, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "router_app", "serve", "--config", path, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        res = asyncio.run(run(args, url, proc.pid))
    finally:
        proc.terminate()
        proc.wait(15)
    for k, v in res.items():
        print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
