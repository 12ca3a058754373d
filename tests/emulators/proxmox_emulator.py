"""Proxmox VE API emulator — a test double, not Proxmox VE.

It serves ``/api2/json/...`` with the response envelope ``{"data": ...}`` and the behaviour a client such
as proxmoxer / community.proxmox relies on:

* auth: ``POST /access/ticket`` (form ``username``/``password``) returns ``ticket`` + ``CSRFPreventionToken``;
  requests then carry the ``PVEAuthCookie`` cookie, and every non-GET request must also carry the
  ``CSRFPreventionToken`` header (401 otherwise).  API tokens use
  ``Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`` and need no CSRF token.  Anything else is a 401.
* ``GET /version``, ``GET /nodes``, ``GET /cluster/nextid`` (``?vmid=`` checks a given id),
  ``GET /cluster/resources?type=vm``.
* ``/nodes/{node}/lxc``: GET list, POST create (returns a UPID; the container appears locked
  ``create`` until the task finishes; the template volume must exist in the storage listing).
* ``/nodes/{node}/lxc/{vmid}/config`` GET (normalised ``net0`` with ``hwaddr``/``type=veth``, ``rootfs``
  as ``<storage>:vm-<vmid>-disk-0,size=<n>G``, ``digest``) and PUT (synchronous, ``delete=`` and
  ``digest`` honoured, unknown keys refused with 400).
* ``/nodes/{node}/lxc/{vmid}/status/current`` GET, ``status/start|stop|shutdown`` POST (UPIDs),
  ``DELETE /nodes/{node}/lxc/{vmid}`` (refused while running).
* ``/nodes/{node}/tasks/{upid}/status`` (``running`` until the task's duration has passed, then
  ``stopped`` with ``exitstatus``) and ``/log``.
* ``GET /pools``, ``GET /nodes/{node}/qemu`` (always empty), ``.../lxc/{vmid}/snapshot`` and
  ``.../lxc/{vmid}/interfaces`` (running guests only), which the community.proxmox inventory plugin reads.
* ``/nodes/{node}/storage`` and ``/nodes/{node}/storage/{storage}/content[?content=vztmpl]``.

Errors follow PVE's shape: the HTTP reason phrase carries the message, the body is ``{"data": null}``
plus ``"errors": {param: msg}`` for parameter errors (400).

Test-only hooks (no auth): ``GET /__emulator__/state``, ``POST /__emulator__/seed`` (merge JSON into
settings: ``task_seconds``, ``version``, ``templates``), ``POST /__emulator__/reset``.
"""

from __future__ import annotations

import copy
import hashlib
import re
import secrets
import threading
import time

try:
    from .emulator_base import INSPECT_PREFIX, parse_body, run_standalone
except ImportError:  # executed as a script
    from emulator_base import INSPECT_PREFIX, parse_body, run_standalone  # type: ignore

LXC_KEYS = {
    "arch", "cmode", "console", "cores", "cpulimit", "cpuunits", "description", "features", "hookscript",
    "hostname", "lock", "memory", "nameserver", "onboot", "ostype", "protection", "rootfs", "searchdomain",
    "startup", "swap", "tags", "template", "timezone", "tty", "unprivileged",
}
CREATE_ONLY = {"ostemplate", "password", "ssh-public-keys", "storage", "pool", "start", "force", "restore",
               "unique", "ignore-unpack-errors", "bwlimit"}
NET_RE = re.compile(r"^net\d+$")
MP_RE = re.compile(r"^mp\d+$")


class PveError(Exception):
    def __init__(self, status: int, reason: str, errors: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.errors = status, reason, errors


def _int(value, name, lo=None, hi=None) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise PveError(400, "Parameter verification failed.", {name: f"type check ('integer') failed - got '{value}'"})
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise PveError(400, "Parameter verification failed.", {name: f"value must be between {lo} and {hi}"})
    return n


def _bool01(value, name) -> int:
    s = str(value).lower()
    if s in ("1", "true", "yes", "on"):
        return 1
    if s in ("0", "false", "no", "off"):
        return 0
    raise PveError(400, "Parameter verification failed.", {name: f"type check ('boolean') failed - got '{value}'"})


class ProxmoxEmulator:
    def __init__(self, tokens: dict | None = None, users: dict | None = None, node: str = "pve",
                 version: str = "8.3.2"):
        self.lock = threading.RLock()
        self._initial = {"tokens": dict(tokens or {}), "users": dict(users or {}), "node": node,
                         "version": version}
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        with self.lock:
            node = self._initial["node"]
            self.settings = {
                "version": self._initial["version"],
                "task_seconds": 0.3,
                "nodes": [node],
                "storages": {"local": ["vztmpl", "iso", "backup"], "local-lvm": ["rootdir", "images"]},
                "templates": ["local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                              "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst"],
            }
            self.tokens = dict(self._initial["tokens"])
            self.users = dict(self._initial["users"])
            self.tickets: dict[str, dict] = {}
            self.guests: dict[int, dict] = {}  # vmid -> {node, config, status}
            self.tasks: dict[str, dict] = {}
            self.requests: list[dict] = []
            self.counters = {"writes": 0, "creates": 0, "starts": 0, "config_puts": 0}
            self._pid = 0x1000

    def snapshot(self) -> dict:
        with self.lock:
            return copy.deepcopy({
                "settings": self.settings, "guests": {str(k): v for k, v in self.guests.items()},
                "tasks": self.tasks, "requests": self.requests, "counters": self.counters,
            })

    # ------------------------------------------------------------------ http
    def handle(self, method, path, query, headers, body):
        with self.lock:
            if path.startswith(INSPECT_PREFIX):
                return self._inspect(method, path[len(INSPECT_PREFIX):], body)
            if not path.startswith("/api2/json/"):
                return 501, {}, {"data": None}
            data, err = parse_body(headers, body)
            if err:
                return 400, {}, {"data": None}
            params = {**query, **(data or {})}
            route = path[len("/api2/json/"):].strip("/")
            try:
                if route == "access/ticket" and method == "POST":
                    return 200, {}, {"data": self._login(params)}
                auth = self._authenticate(method, headers)
                self.requests.append({"method": method, "path": "/" + route, "auth": auth,
                                      "params": sorted(params)})
                result = self._route(method, route.split("/"), params, auth)
                return 200, {}, {"data": result}
            except PveError as e:
                payload = {"data": None}
                if e.errors:
                    payload["errors"] = e.errors
                return e.status, {"X-Reason": e.reason}, payload

    def _inspect(self, method, what, body):
        data, _ = parse_body({"content-type": "application/json"}, body)
        if what == "state" and method == "GET":
            return 200, {}, self.snapshot()
        if what == "reset" and method == "POST":
            self.reset()
            return 200, {}, {"status": "ok"}
        if what == "seed" and method == "POST":
            self.settings.update(data or {})
            return 200, {}, {"status": "ok"}
        return 404, {}, {"error": "unknown emulator hook"}

    # ------------------------------------------------------------------ auth
    def _login(self, params) -> dict:
        user, password = params.get("username", ""), params.get("password", "")
        if "@" not in user:
            user += "@pam"
        if self.users.get(user) != password or not password:
            raise PveError(401, "authentication failure")
        ticket = f"PVE:{user}:{int(time.time()):08X}::{secrets.token_urlsafe(24)}"
        csrf = f"{int(time.time()):08X}:{secrets.token_urlsafe(16)}"
        self.tickets[ticket] = {"user": user, "csrf": csrf}
        return {"ticket": ticket, "CSRFPreventionToken": csrf, "username": user,
                "cap": {"vms": {"VM.Allocate": 1}, "nodes": {"Sys.Audit": 1}}}

    def _authenticate(self, method, headers) -> str:
        auth = headers.get("authorization", "")
        if auth:
            m = re.match(r"^PVEAPIToken=([^!=\s]+@[^!=\s]+)!([^=\s]+)=(\S+)$", auth.strip())
            if not m:
                raise PveError(401, "invalid PVEAPIToken")
            full = f"{m.group(1)}!{m.group(2)}"
            if full not in self.tokens:
                raise PveError(401, f"no such token '{m.group(2)}' for user '{m.group(1)}'")
            if self.tokens[full] != m.group(3):
                raise PveError(401, "invalid token value!")
            return "token"
        cookies = {}
        for part in headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k:
                cookies[k] = v
        ticket = cookies.get("PVEAuthCookie")
        if not ticket:
            raise PveError(401, "No ticket")
        from urllib.parse import unquote

        info = self.tickets.get(unquote(ticket))
        if info is None:
            raise PveError(401, "invalid ticket")
        if method != "GET" and headers.get("csrfpreventiontoken") != info["csrf"]:
            raise PveError(401, "Permission check failed (invalid csrf token)")
        return "ticket"

    # ------------------------------------------------------------------ tasks
    def _new_task(self, node: str, kind: str, vmid: int, user: str, on_done, fail: str | None = None) -> str:
        self._pid += 1
        start = int(time.time())
        upid = f"UPID:{node}:{self._pid:08X}:{self._pid * 7:08X}:{start:08X}:{kind}:{vmid}:{user}:"
        self.tasks[upid] = {"node": node, "type": kind, "id": str(vmid), "user": user, "starttime": start,
                            "pid": self._pid, "done_at": time.monotonic() + float(self.settings["task_seconds"]),
                            "on_done": on_done, "fail": fail, "finished": False,
                            "log": [f"{kind} {vmid} started"]}
        self.counters["writes"] += 1
        return upid

    def _tick(self) -> None:
        now = time.monotonic()
        for upid, t in self.tasks.items():
            if not t["finished"] and now >= t["done_at"]:
                t["finished"] = True
                if t["fail"]:
                    t["exitstatus"] = t["fail"]
                    t["log"].append(f"TASK ERROR: {t['fail']}")
                else:
                    if t["on_done"]:
                        t["on_done"]()
                    t["exitstatus"] = "OK"
                    t["log"].append("TASK OK")
                t["on_done"] = None

    # ------------------------------------------------------------------ routing
    def _route(self, method, parts, params, auth):
        self._tick()
        user = "root@pam" if auth == "ticket" else "token"
        if parts == ["version"] and method == "GET":
            v = self.settings["version"]
            return {"version": v, "release": ".".join(v.split(".")[:2]), "repoid": "0f39f621c4a3a0b1"}
        if parts == ["nodes"] and method == "GET":
            return [{"node": n, "status": "online", "type": "node", "id": f"node/{n}", "maxcpu": 8,
                     "maxmem": 34359738368} for n in self.settings["nodes"]]
        if parts == ["pools"] and method == "GET":
            return []
        if len(parts) == 2 and parts[0] == "pools" and method == "GET":
            raise PveError(500, f"pool '{parts[1]}' does not exist")
        if parts == ["cluster", "nextid"] and method == "GET":
            if params.get("vmid"):
                vmid = _int(params["vmid"], "vmid", 100, 999999999)
                if vmid in self.guests:
                    raise PveError(400, "Parameter verification failed.", {"vmid": f"VM {vmid} already exists"})
                return str(vmid)
            vmid = 100
            while vmid in self.guests:
                vmid += 1
            return str(vmid)
        if parts == ["cluster", "resources"] and method == "GET":
            if params.get("type") not in (None, "", "vm"):
                return []
            return [self._resource(vmid, g) for vmid, g in sorted(self.guests.items())]
        if len(parts) >= 2 and parts[0] == "nodes":
            node = parts[1]
            if node not in self.settings["nodes"]:
                raise PveError(595, f"no such cluster node '{node}'")
            return self._node(method, node, parts[2:], params, user)
        raise PveError(501, f"Method '{method} /{'/'.join(parts)}' not implemented")

    def _resource(self, vmid, g) -> dict:
        cfg = g["config"]
        return {"id": f"lxc/{vmid}", "vmid": vmid, "name": cfg.get("hostname", f"CT{vmid}"), "node": g["node"],
                "type": "lxc", "status": g["status"], "maxmem": int(cfg.get("memory", 512)) * 1048576,
                "maxcpu": int(cfg.get("cores", 1)), "template": 0}

    def _node(self, method, node, rest, params, user):
        if rest == ["lxc"]:
            if method == "GET":
                return [{"vmid": vmid, "name": g["config"].get("hostname"), "status": g["status"], "type": "lxc",
                         "cpus": int(g["config"].get("cores", 1)),
                         "maxmem": int(g["config"].get("memory", 512)) * 1048576}
                        for vmid, g in sorted(self.guests.items()) if g["node"] == node]
            if method == "POST":
                return self._create(node, params, user)
        if rest == ["qemu"] and method == "GET":
            return []  # this emulator has containers only
        if len(rest) >= 2 and rest[0] == "lxc":
            vmid = _int(rest[1], "vmid", 100, 999999999)
            return self._guest(method, node, vmid, rest[2:], params, user)
        if len(rest) >= 2 and rest[0] == "tasks":
            task = self.tasks.get(rest[1])
            if task is None or task["node"] != node:
                raise PveError(500, f"no such task '{rest[1]}'")
            if rest[2:] == ["status"] and method == "GET":
                out = {"upid": rest[1], "node": node, "pid": task["pid"], "pstart": task["pid"] * 7,
                       "starttime": task["starttime"], "type": task["type"], "id": task["id"],
                       "user": task["user"], "status": "stopped" if task["finished"] else "running"}
                if task["finished"]:
                    out["exitstatus"] = task["exitstatus"]
                return out
            if rest[2:] == ["log"] and method == "GET":
                return [{"n": i + 1, "t": line} for i, line in enumerate(task["log"])]
        if rest == ["storage"] and method == "GET":
            return [{"storage": s, "content": ",".join(c), "active": 1, "enabled": 1}
                    for s, c in self.settings["storages"].items()]
        if len(rest) == 3 and rest[0] == "storage" and rest[2] == "content" and method == "GET":
            storage = rest[1]
            if storage not in self.settings["storages"]:
                raise PveError(500, f"storage '{storage}' does not exist")
            items = []
            for volid in self.settings["templates"]:
                if volid.split(":", 1)[0] == storage:
                    items.append({"volid": volid, "content": "vztmpl", "format": "tzst", "size": 123456789,
                                  "ctime": 1700000000})
            for vmid, g in self.guests.items():
                vol = g["config"].get("rootfs", "").split(",")[0]
                if vol.split(":", 1)[0] == storage:
                    items.append({"volid": vol, "content": "rootdir", "format": "raw", "vmid": vmid,
                                  "size": 8 * 1024 ** 3})
            if params.get("content"):
                items = [i for i in items if i["content"] == params["content"]]
            if params.get("vmid"):
                items = [i for i in items if str(i.get("vmid")) == str(params["vmid"])]
            return items
        raise PveError(501, f"Method '{method} /nodes/{node}/{'/'.join(rest)}' not implemented")

    # ------------------------------------------------------------------ lxc
    @staticmethod
    def _mac(vmid: int, idx: int) -> str:
        h = hashlib.sha1(f"{vmid}-{idx}".encode()).hexdigest()
        return "BC:24:11:" + ":".join(h[i:i + 2].upper() for i in (0, 2, 4))

    def _norm_net(self, vmid: int, key: str, value: str, old: str | None) -> str:
        props = {}
        for part in str(value).split(","):
            k, sep, v = part.partition("=")
            if not sep:
                raise PveError(400, "Parameter verification failed.", {key: f"invalid format - missing '=' in '{part}'"})
            props[k] = v
        if "name" not in props:
            raise PveError(400, "Parameter verification failed.", {key: "missing property - 'name'"})
        if "tag" in props and not (props["tag"].isdigit() and 1 <= int(props["tag"]) <= 4094):
            raise PveError(400, "Parameter verification failed.", {key: f"invalid tag '{props['tag']}'"})
        old_mac = None
        if old:
            old_mac = dict(p.partition("=")[::2] for p in old.split(",")).get("hwaddr")
        props.setdefault("hwaddr", old_mac or self._mac(vmid, int(key[3:])))
        props.setdefault("type", "veth")
        ordered = [f"name={props.pop('name')}"] + [f"{k}={props[k]}" for k in sorted(props)]
        return ",".join(ordered)

    def _rootfs(self, vmid: int, value: str | None, storage: str) -> str:
        if not value:
            value = f"{storage}:4"
        first, *opts = str(value).split(",")
        m = re.match(r"^([\w.-]+):(\d+(?:\.\d+)?)$", first)
        if m:
            if m.group(1) not in self.settings["storages"]:
                raise PveError(500, f"storage '{m.group(1)}' does not exist")
            size = m.group(2).rstrip("0").rstrip(".") if "." in m.group(2) else m.group(2)
            opts = [o for o in opts if not o.startswith("size=")]
            return ",".join([f"{m.group(1)}:vm-{vmid}-disk-0", *opts, f"size={size}G"])
        return value

    @staticmethod
    def _digest(cfg: dict) -> str:
        text = "\n".join(f"{k}: {v}" for k, v in sorted(cfg.items()) if k != "digest")
        return hashlib.sha1(text.encode()).hexdigest()

    def _apply_keys(self, vmid: int, cfg: dict, params: dict, creating: bool) -> None:
        unknown = {}
        for key, value in params.items():
            if key in ("node", "vmid", "digest", "delete") or (creating and key in CREATE_ONLY):
                continue
            if NET_RE.match(key):
                cfg[key] = self._norm_net(vmid, key, value, cfg.get(key))
            elif MP_RE.match(key):
                cfg[key] = str(value)
            elif key == "rootfs":
                if not creating:
                    vol = str(value).split(",")[0]
                    if vol.split(":")[0] and vol != cfg.get("rootfs", "").split(",")[0] and re.match(r"^[\w.-]+:\d", vol):
                        raise PveError(500, "unable to modify read-only option: 'rootfs' volume (use resize/move)")
                    cfg[key] = str(value)
                else:
                    cfg[key] = self._rootfs(vmid, value, params.get("storage", "local"))
            elif key in ("cores", "memory", "swap", "cpuunits"):
                cfg[key] = _int(value, key, 0)
            elif key in ("onboot", "unprivileged", "protection", "template", "console"):
                cfg[key] = _bool01(value, key)
            elif key in LXC_KEYS:
                cfg[key] = str(value)
            else:
                unknown[key] = "property is not defined in schema and the schema does not allow additional properties"
        if unknown:
            raise PveError(400, "Parameter verification failed.", unknown)

    def _create(self, node, params, user):
        if "vmid" not in params:
            raise PveError(400, "Parameter verification failed.", {"vmid": "property is missing and it is not optional"})
        if "ostemplate" not in params:
            raise PveError(400, "Parameter verification failed.", {"ostemplate": "property is missing and it is not optional"})
        vmid = _int(params["vmid"], "vmid", 100, 999999999)
        if vmid in self.guests:
            raise PveError(500, f"CT {vmid} already exists on node '{self.guests[vmid]['node']}'")
        template = params["ostemplate"]
        if template not in self.settings["templates"]:
            raise PveError(500, f"volume '{template}' does not exist")
        if "hostname" in params and not re.match(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$", params["hostname"]):
            raise PveError(400, "Parameter verification failed.", {"hostname": "value does not look like a valid DNS name"})
        cfg = {"arch": "amd64", "ostype": "ubuntu" if "ubuntu" in template else "debian", "memory": 512,
               "swap": 512, "cores": 1, "hostname": f"CT{vmid}", "unprivileged": 0}
        self._apply_keys(vmid, cfg, params, creating=True)
        if "rootfs" not in cfg:
            cfg["rootfs"] = self._rootfs(vmid, None, params.get("storage", "local"))
        cfg["lock"] = "create"
        cfg["digest"] = self._digest(cfg)
        guest = {"node": node, "config": cfg, "status": "stopped",
                 "ssh_public_keys": params.get("ssh-public-keys", ""), "created_by": user}
        self.guests[vmid] = guest
        self.counters["creates"] += 1

        def done():
            guest["config"].pop("lock", None)
            guest["config"]["digest"] = self._digest(guest["config"])

        return self._new_task(node, "vzcreate", vmid, user, done)

    def _guest(self, method, node, vmid, rest, params, user):
        g = self.guests.get(vmid)
        if g is None or g["node"] != node:
            raise PveError(500, f"Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist")
        if rest == [] and method == "GET":
            return [{"subdir": s} for s in ("config", "status", "snapshot", "firewall", "rrd")]
        if rest == [] and method == "DELETE":
            if g["status"] == "running":
                raise PveError(500, f"CT {vmid} is running - destroy failed")
            return self._new_task(node, "vzdestroy", vmid, user, lambda: self.guests.pop(vmid, None))
        if rest == ["config"] and method == "GET":
            return copy.deepcopy(g["config"])
        if rest == ["config"] and method == "PUT":
            if "lock" in g["config"]:
                raise PveError(500, f"CT is locked ({g['config']['lock']})")
            if params.get("digest") and params["digest"] != g["config"]["digest"]:
                raise PveError(500, "detected modified configuration - file changed by other user? Try again.")
            cfg = dict(g["config"])
            for key in [k for k in str(params.get("delete", "")).split(",") if k]:
                cfg.pop(key, None)
            self._apply_keys(vmid, cfg, params, creating=False)
            cfg["digest"] = self._digest(cfg)
            g["config"] = cfg
            self.counters["config_puts"] += 1
            self.counters["writes"] += 1
            return None
        if rest == ["snapshot"] and method == "GET":
            return [{"name": "current", "description": "You are here!", "running": int(g["status"] == "running"),
                     "digest": g["config"]["digest"]}]
        if rest == ["interfaces"] and method == "GET":
            if g["status"] != "running":
                raise PveError(500, f"CT {vmid} not running")
            out = [{"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"}]
            for key in sorted(k for k in g["config"] if NET_RE.match(k)):
                props = dict(p.partition("=")[::2] for p in g["config"][key].split(","))
                iface = {"name": props.get("name", "eth0"), "hwaddr": props.get("hwaddr", "")}
                if props.get("ip", "dhcp") not in ("dhcp", "manual"):
                    iface["inet"] = props["ip"]
                out.append(iface)
            return out
        if rest == ["status", "current"] and method == "GET":
            cfg = g["config"]
            out = {"vmid": vmid, "name": cfg.get("hostname"), "status": g["status"], "type": "lxc",
                   "cpus": int(cfg.get("cores", 1)), "maxmem": int(cfg.get("memory", 512)) * 1048576,
                   "uptime": 42 if g["status"] == "running" else 0, "ha": {"managed": 0}}
            if "lock" in cfg:
                out["lock"] = cfg["lock"]
            return out
        if len(rest) == 2 and rest[0] == "status" and method == "POST":
            action = rest[1]
            if "lock" in g["config"]:
                raise PveError(500, f"CT is locked ({g['config']['lock']})")
            if action == "start":
                if g["status"] == "running":
                    raise PveError(500, f"CT {vmid} already running")
                self.counters["starts"] += 1
                return self._new_task(node, "vzstart", vmid, user, lambda: g.__setitem__("status", "running"))
            if action in ("stop", "shutdown"):
                if g["status"] != "running":
                    raise PveError(500, f"CT {vmid} not running")
                kind = "vzstop" if action == "stop" else "vzshutdown"
                return self._new_task(node, kind, vmid, user, lambda: g.__setitem__("status", "stopped"))
        raise PveError(501, f"Method '{method} /nodes/{node}/lxc/{vmid}/{'/'.join(rest)}' not implemented")


if __name__ == "__main__":
    run_standalone(ProxmoxEmulator, 8006)
