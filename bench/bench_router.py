#!/usr/bin/env python3
"""Router overhead benchmark: direct-to-upstream vs through homelab-router, side by side, in one run.

Starts a fast local upstream (bench/fast_upstream.py) and the router (`python -m router_app serve`, one uvicorn
worker, uvloop + httptools) pointed at it, then measures with a cheap load generator in its own process
(`wrk` when installed, else an aiohttp loop in a subprocess):
  * latency p50/p99 at 1 connection (and the added latency),
  * requests/s at 32 connections,
  * time to first chunk for streams (sequential, aiohttp client),
  * router RSS after the run.
Everything is bounded: each phase runs --duration seconds; the whole run takes well under a minute by default.

    .venv/bin/python bench/bench_router.py [--duration 5] [--streams 200] [--keys]

--keys: the same table with access control on: a per-app key (rpm limit and token budget set high enough never to
refuse) is created in the router's SQLite store and every request carries it, so the run pays for the key check,
the rpm and budget bookkeeping, the ledger rows and the audit log.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BODY = {"model": "homelab/auto", "max_tokens": 16,
        "messages": [{"role": "user", "content": "please refactor this fastapi code and add pytest tests"}]}


HEADERS = {"Content-Type": "application/json"}
if os.environ.get("BENCH_AUTH"):
    HEADERS["Authorization"] = os.environ["BENCH_AUTH"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url: str, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def rss_kib(pid: int) -> tuple[int, int]:
    cur = peak = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cur, peak


# ------------------------------------------------------------------------------------------ load generators
def _ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else (x * 1000 if m.group(2) == "s" else x)


def run_wrk(url: str, conns: int, duration: float, script: str) -> dict:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "--timeout", "10s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": int(errs.group(1)) if errs else 0,
            "socket_errors": sock.group(0) if sock else ""}


async def _aio_load(url: str, conns: int, duration: float) -> dict:
    import aiohttp
    lat: list = []
    errors = 0
    data = json.dumps(BODY).encode()
    stop = time.perf_counter() + duration
    conn = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def worker():
            nonlocal errors
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with s.post(url, data=data, headers=HEADERS) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        el = time.perf_counter() - t0
    lat.sort()
    return {"rps": len(lat) / el, "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, "errors": errors}


def run_aio(url: str, conns: int, duration: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--loadgen", url, str(conns), str(duration)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def stream_ttfc(url: str, n: int) -> dict:
    import aiohttp
    body = dict(BODY, stream=True)
    data = json.dumps(body).encode()
    first, total = [], []
    async with aiohttp.ClientSession() as s:
        for i in range(n + 10):
            t = time.perf_counter()
            async with s.post(url, data=data, headers=HEADERS) as r:
                await r.content.readany()
                t1 = time.perf_counter()
                await r.read()
                t2 = time.perf_counter()
            if i >= 10:    # warm-up
                first.append((t1 - t) * 1000)
                total.append((t2 - t) * 1000)
    return {"ttfc_p50_ms": statistics.median(first), "ttfc_p99_ms": sorted(first)[int(len(first) * 0.99) - 1],
            "total_p50_ms": statistics.median(total)}


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load phase")
    ap.add_argument("--streams", type=int, default=200, help="sequential streams per side for time-to-first-chunk")
    ap.add_argument("--loadgen", nargs=3, metavar=("URL", "CONNS", "SECONDS"), help=argparse.SUPPRESS)
    ap.add_argument("--no-wrk", action="store_true", help="use the aiohttp load generator even if wrk exists")
    ap.add_argument("--keys", action="store_true", help="access control on: every request carries a per-app key")
    args = ap.parse_args()
    if args.loadgen:
        url, c, d = args.loadgen
        print(json.dumps(asyncio.run(_aio_load(url, int(c), float(d)))))
        return 0

    import yaml
    tmp = tempfile.mkdtemp(prefix="bench-router-")
    up_port, rt_port = free_port(), free_port()
    procs = []
    try:
        up = subprocess.Popen([sys.executable, os.path.join(HERE, "fast_upstream.py"), str(up_port)],
                              stdout=subprocess.PIPE, text=True)
        procs.append(up)
        up.stdout.readline()
        cfg = yaml.safe_load(open(os.path.join(ROOT, "router_app", "examples", "four-node.yaml")))
        for r in cfg["routes"].values():
            r["url"] = f"http://127.0.0.1:{up_port}/v1"
            r.pop("api_key_env", None)
            r["max_concurrency"] = 1024
        cfg["log_dir"] = os.path.join(tmp, "logs")
        cfg["listen"] = {"host": "127.0.0.1", "port": rt_port}
        cfg["health"] = {"interval_s": 60, "timeout_s": 2}
        if args.keys:
            sys.path.insert(0, ROOT)
            from router_app.access.store import Store
            cfg["store_path"] = os.path.join(tmp, "router.sqlite3")
            cfg["auth"] = "required"
            st = Store(cfg["store_path"])
            _, secret = st.create_key("bench", rpm=10_000_000, tokens_per_month=10 ** 12)
            st.close()
            HEADERS["Authorization"] = f"Bearer {secret}"
            os.environ["BENCH_AUTH"] = HEADERS["Authorization"]   # for the load generator subprocess
        cfg_path = os.path.join(tmp, "bench.yaml")
        with open(cfg_path, "w") as fh:
            yaml.safe_dump(cfg, fh)
        router = subprocess.Popen([sys.executable, "-m", "router_app", "serve", "--config", cfg_path],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(router)
        wait_http(f"http://127.0.0.1:{rt_port}/healthz")

        direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        routed = f"http://127.0.0.1:{rt_port}/v1/chat/completions"
        use_wrk = shutil.which("wrk") and not args.no_wrk
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as fh:
            fh.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
                     + (f'wrk.headers["Authorization"] = "{HEADERS["Authorization"]}"\n' if args.keys else ""))

        def load(url, conns, dur):
            return run_wrk(url, conns, dur, script) if use_wrk else run_aio(url, conns, dur)

        # warm-up both paths
        load(direct, 4, 1)
        load(routed, 4, 1)
        res = {}
        for side, url in (("direct", direct), ("router", routed)):
            res[side] = {"c1": load(url, 1, args.duration), "c32": load(url, 32, args.duration)}
            res[side]["stream"] = asyncio.run(stream_ttfc(url, args.streams))
        rss, peak = rss_kib(router.pid)

        d, r = res["direct"], res["router"]
        gen = "wrk" if use_wrk else "aiohttp (subprocess)"
        print(f"\nhomelab-router benchmark{'  [keys on]' if args.keys else ''}  ({os.cpu_count()} CPUs, load generator: {gen}, "
              f"{args.duration:g}s per phase, {args.streams} streams)\n")
        rows = [
            ("latency p50 @1 conn (ms)", d["c1"]["p50_ms"], r["c1"]["p50_ms"]),
            ("latency p99 @1 conn (ms)", d["c1"]["p99_ms"], r["c1"]["p99_ms"]),
            ("requests/s @1 conn", d["c1"]["rps"], r["c1"]["rps"]),
            ("requests/s @32 conns", d["c32"]["rps"], r["c32"]["rps"]),
            ("latency p50 @32 conns (ms)", d["c32"]["p50_ms"], r["c32"]["p50_ms"]),
            ("stream first chunk p50 (ms)", d["stream"]["ttfc_p50_ms"], r["stream"]["ttfc_p50_ms"]),
            ("stream first chunk p99 (ms)", d["stream"]["ttfc_p99_ms"], r["stream"]["ttfc_p99_ms"]),
            ("stream total p50 (ms)", d["stream"]["total_p50_ms"], r["stream"]["total_p50_ms"]),
        ]
        print(f"{'metric':32} {'direct':>10} {'router':>10} {'added':>10} {'ratio':>8}")
        for name, a, b in rows:
            print(f"{name:32} {a:10.3f} {b:10.3f} {b - a:10.3f} {b / a if a else float('nan'):8.2f}")
        print(f"{'router RSS (MiB) now / peak':32} {'':10} {rss / 1024:10.1f} {peak / 1024:10.1f}")
        errs = d["c32"]["errors"] + r["c32"]["errors"] + d["c1"]["errors"] + r["c1"]["errors"]
        print(f"\nnon-2xx responses during load: {errs}")
        print(f"targets: added p50 <= 1 ms -> {r['c1']['p50_ms'] - d['c1']['p50_ms']:.3f} ms; "
              f">= 2000 req/s @32 -> {r['c32']['rps']:.0f}")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
