"""A Netdata *parent* API double (loopback, stdlib http.server) for the MQTT bridge tests.

Follows the Netdata agent REST API v1 as served by Debian 12's Netdata 1.37 (https://learn.netdata.cloud/docs/rest-api/
and the agent's swagger, web/api/netdata-swagger.yaml): ``GET /api/v1/info`` (with ``mirrored_hosts``), and per
mirrored host ``GET /host/<name>/api/v1/charts`` and ``GET /host/<name>/api/v1/allmetrics?format=json``. Like the
real agent it answers 404 for a host it does not mirror and 400 for an allmetrics format it does not know.
Chart ids, contexts and dimensions are the ones the real collectors use (proc.plugin, diskspace.plugin, python.d
nvidia_smi in 1.37; go.d nvidia_smi for the Spark node). A real Netdata cannot give us GPU charts here.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _chart(cid, context, units, dims):
    return {"id": cid, "name": cid, "context": context, "units": units,
            "dimensions": {d: {"name": d} for d in dims}}


def base_host(cpu=12.5, load1=0.7):
    return {
        "system.cpu": (_chart("system.cpu", "system.cpu", "percentage",
                              ["user", "system", "iowait", "idle"]), {"user": cpu - 2.5, "system": 2.0,
                                                                     "iowait": 0.5, "idle": 100 - cpu}),
        "system.ram": (_chart("system.ram", "system.ram", "MiB", ["free", "used", "cached", "buffers"]),
                       {"free": 8000.0, "used": 6000.0, "cached": 1500.0, "buffers": 500.0}),
        "system.load": (_chart("system.load", "system.load", "load", ["load1", "load5", "load15"]),
                        {"load1": load1, "load5": 0.5, "load15": 0.4}),
        "disk_space._": (_chart("disk_space._", "disk.space", "GiB", ["avail", "used", "reserved_for_root"]),
                         {"avail": 60.0, "used": 35.0, "reserved_for_root": 5.0}),
    }


def pythond_gpu(index=0, util=40.0, used=9500.0, free=6500.0, temp=61.0, power=180.0):
    """python.d nvidia_smi (Netdata 1.37): chart ids gpu<N>_<chart>."""
    p = f"nvidia_smi.gpu{index}_"
    return {
        p + "gpu_utilization": (_chart(p + "gpu_utilization", "nvidia_smi.gpu_utilization", "%", ["utilization"]),
                                {"utilization": util}),
        p + "memory_allocated": (_chart(p + "memory_allocated", "nvidia_smi.memory_allocated", "MiB",
                                        ["free", "used"]), {"free": free, "used": used}),
        p + "temperature": (_chart(p + "temperature", "nvidia_smi.temperature", "celsius", ["temp"]), {"temp": temp}),
        p + "power": (_chart(p + "power", "nvidia_smi.power", "Watts", ["power"]), {"power": power}),
    }


def god_gpu_unified(uuid="GPU-5f1c", util=70.0, temp=55.0, power=90.0):
    """go.d nvidia_smi on a unified-memory GB10 (Spark): the frame-buffer chart exists but has no values."""
    p = f"nvidia_smi.gpu_{uuid}_"
    return {
        p + "gpu_utilization": (_chart(p + "gpu_utilization", "nvidia_smi.gpu_utilization", "%", ["gpu"]),
                                {"gpu": util}),
        p + "gpu_frame_buffer_memory_usage": (_chart(p + "gpu_frame_buffer_memory_usage",
                                                     "nvidia_smi.gpu_frame_buffer_memory_usage", "B",
                                                     ["free", "used", "reserved"]),
                                              {"free": None, "used": None, "reserved": None}),
        p + "gpu_temperature": (_chart(p + "gpu_temperature", "nvidia_smi.gpu_temperature", "Celsius",
                                       ["temperature"]), {"temperature": temp}),
        p + "gpu_power_draw": (_chart(p + "gpu_power_draw", "nvidia_smi.gpu_power_draw", "Watts", ["power_draw"]),
                               {"power_draw": power}),
    }


class NetdataDouble:
    def __init__(self, hosts: dict[str, dict], port: int = 0):
        self.hosts = hosts            # name -> {chart id: (chart, values)}
        self.stale: set[str] = set()  # hosts whose last_updated stopped moving (a child that stopped streaming)
        self.requests: list[str] = []
        self.port = port
        self._srv = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        double = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                return

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                double.requests.append(u.path)
                if u.path == "/api/v1/info":
                    return self._send(200, {"version": "v1.37.1", "mirrored_hosts": sorted(double.hosts)})
                parts = u.path.split("/")
                if len(parts) < 6 or parts[1] != "host" or parts[3:5] != ["api", "v1"]:
                    return self._send(404, {"error": "not found"})
                host = urllib.parse.unquote(parts[2])
                if host not in double.hosts:
                    return self._send(404, {"error": f"host {host} not found"})
                charts = double.hosts[host]
                if parts[5] == "charts":
                    return self._send(200, {"hostname": host, "charts": {k: c for k, (c, _) in charts.items()}})
                if parts[5] == "allmetrics":
                    fmt = urllib.parse.parse_qs(u.query).get("format", ["shell"])[0]
                    if fmt != "json":
                        return self._send(400, {"error": f"format {fmt} not supported by this double"})
                    lu = int(time.time()) - (3600 if host in double.stale else 1)
                    return self._send(200, {k: {"name": k, "context": c["context"], "units": c["units"],
                                                "last_updated": lu,
                                                "dimensions": {d: {"name": d, "value": v} for d, v in vals.items()}}
                                            for k, (c, vals) in charts.items()})
                return self._send(404, {"error": "not found"})

        self._srv = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self._srv.daemon_threads = True
        self.port = self._srv.server_address[1]
        threading.Thread(target=self._srv.serve_forever, daemon=True, name="netdata-double").start()

    def stop(self) -> None:
        if self._srv:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None


def main() -> None:
    """``python3 netdata_api.py --port 19999 --host NAME[:gpu|:unified] ...`` (the Molecule scenario's stand-in)."""
    import argparse
    ap = argparse.ArgumentParser(description="Netdata parent API double (TEST DOUBLE)")
    ap.add_argument("--port", type=int, default=19999)
    ap.add_argument("--host", action="append", default=[])
    args = ap.parse_args()
    hosts = {}
    for spec in args.host or ["localhost"]:
        name, _, kind = spec.partition(":")
        hosts[name] = {**base_host(), **(pythond_gpu(0) if kind == "gpu" else {}),
                       **(god_gpu_unified() if kind == "unified" else {})}
    NetdataDouble(hosts, port=args.port)
    threading.Event().wait()


if __name__ == "__main__":
    main()
