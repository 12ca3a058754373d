"""OPNsense REST API emulator — a test double, not OPNsense.

Sources, per endpoint group (the API reference lists each controller's commands and parameters):
``core/firmware`` https://docs.opnsense.org/development/api/core/firmware.html; ``interfaces/vlan_settings``
and ``interfaces/assignment`` https://docs.opnsense.org/development/api/core/interfaces.html with the
controllers VlanSettingsController.php / AssignmentController.php of opnsense/core
(src/opnsense/mvc/app/controllers/OPNsense/Interfaces/Api); ``firewall/filter``
https://docs.opnsense.org/development/api/core/firewall.html; Kea and Unbound: opnsense_services.py.

It follows the documented endpoint layout ``/api/<module>/<controller>/<command>[/<param>]`` and the
behaviour of the upstream controllers that matters to a client:

* auth: HTTP basic with an API key/secret pair; anything else -> 401 ``{"status":401,"message":"Authentication Failed"}``.
* ``core/firmware/status`` (GET): ``{"product": {"product_version": ...}, "status": ...}`` (before 23.1 the
  version sat at the top level, which the emulator reproduces for old versions).
* ``interfaces/vlan_settings``: ``searchItem`` (rows with raw values, ``%field`` display values, ``vlanif``
  decorated ``"vlan01 [DESCR]"`` when assigned), ``getItem``, ``addItem`` (device auto-named
  ``vlan0N``/``qinq0N``), ``setItem`` (refuses a device-name change -- and with it a tag change on legacy
  names -- while the device is assigned), ``delItem`` (refuses while assigned: HTTP 500 ``errorMessage``),
  ``reconfigure`` (only then does the "running" VLAN set change).
* ``interfaces/assignment`` (only for 26.7 and later, 404 before): ``searchItem``, ``getItem``, ``addItem``
  (identifier ``optN``, anchored in the config at once, the rest pending), ``setItem/<ifname>``,
  ``delItem/<ifname>`` (pending until ``reconfigure``; refused for a locked interface), ``reconfigure``.
* ``firewall/filter``: ``searchRule`` (MVC rules plus a non-MVC internal rule), ``getRule``, ``addRule``,
  ``setRule``, ``delRule``, ``apply`` (only then does the "running" rule set change).
* ``kea/dhcpv4``, ``kea/service``, ``unbound/settings``, ``unbound/service``: see opnsense_services.py.
* validation failures answer 200 ``{"result":"failed","validations":{"<node>.<field>": msg}}``.

Command names are matched case-insensitively with ``_`` ignored, like the PHP router accepts
``searchItem``/``searchitem``/``search_item``.

Test-only hooks (no auth): ``GET /__emulator__/state``, ``POST /__emulator__/seed`` (merge JSON into
settings: ``version``, ``credentials``, ``devices``), ``POST /__emulator__/assign`` (put an interface in
the running config directly, as the GUI would), ``POST /__emulator__/reset``.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
import threading
import uuid as uuidlib

try:
    from .emulator_base import INSPECT_PREFIX, parse_body, run_standalone
    from .opnsense_services import ServicesMixin
except ImportError:  # executed as a script
    from emulator_base import INSPECT_PREFIX, parse_body, run_standalone  # type: ignore
    from opnsense_services import ServicesMixin  # type: ignore

PCP_DESCR = {
    "0": "Best Effort (0, default)", "1": "Background (1, lowest)", "2": "Excellent Effort (2)",
    "3": "Critical Applications (3)", "4": "Video (4)", "5": "Voice (5)",
    "6": "Internetwork Control (6)", "7": "Network Control (7, highest)",
}
RULE_DEFAULTS = {
    "enabled": "1", "statetype": "keep", "sequence": "1", "action": "pass", "quick": "1",
    "interfacenot": "0", "interface": "", "direction": "in", "ipprotocol": "inet", "protocol": "any",
    "source_net": "any", "source_not": "0", "source_port": "", "destination_net": "any",
    "destination_not": "0", "destination_port": "", "gateway": "", "log": "0", "categories": "",
    "description": "",
}
PROTOCOLS = {"any", "TCP", "UDP", "TCP/UDP", "ICMP", "ESP", "AH", "GRE", "IGMP", "PIM", "OSPF"}
ASSIGN_DEFAULTS = {"descr": "", "if": "", "enable": "1", "lock": "1", "type4": "none", "type6": "none",
                   "ipaddr": "", "mtu": "", "blockpriv": "0", "blockbogons": "0"}
ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


def _norm(cmd: str) -> str:
    return cmd.replace("_", "").lower()


def _version_tuple(v: str) -> tuple[int, int]:
    m = re.match(r"^(\d+)\.(\d+)", v)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class OPNsenseEmulator(ServicesMixin):
    def __init__(self, version: str = "26.7.2", credentials: dict | None = None):
        self.lock = threading.RLock()
        self._initial = {"version": version, "credentials": dict(credentials or {"key1": "secret1"})}
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        with self.lock:
            self.settings = {
                "version": self._initial["version"],
                "credentials": dict(self._initial["credentials"]),
                "devices": ["vtnet0", "vtnet1", "vtnet2", "igb0", "igb1", "igb2"],
            }
            # running config.xml <interfaces>: identifier -> legacy-ish data
            self.interfaces = {
                "wan": {"if": "vtnet0", "descr": "", "enable": "1", "lock": "0", "type4": "dhcp", "ipaddr": ""},
                "lan": {"if": "vtnet1", "descr": "", "enable": "1", "lock": "0", "type4": "staticv4",
                        "ipaddr": "192.0.2.1/24"},
            }
            self.if_todo: dict[str, dict] = {}
            self.vlans: dict[str, dict] = {}
            self.rules: dict[str, dict] = {}
            self.running = {"vlans": {}, "rules": {}}
            self.counters = {"vlan_reconfigure": 0, "assignment_reconfigure": 0, "filter_apply": 0,
                             "writes": 0}
            self.requests: list[dict] = []
            self._services_reset()  # kea + unbound (opnsense_services.py)

    def snapshot(self) -> dict:
        with self.lock:
            return copy.deepcopy({
                "settings": {k: v for k, v in self.settings.items() if k != "credentials"},
                "interfaces": self.interfaces, "if_todo": self.if_todo, "vlans": self.vlans,
                "rules": self.rules, "running": self.running, "counters": self.counters,
                "kea": self.kea, "unbound": self.unbound,
                "requests": self.requests,
            })

    @property
    def has_assignment_api(self) -> bool:
        return _version_tuple(self.settings["version"]) >= (26, 7)

    # ------------------------------------------------------------------ http
    def handle(self, method, path, query, headers, body):
        with self.lock:
            if path.startswith(INSPECT_PREFIX):
                return self._inspect(method, path[len(INSPECT_PREFIX):], headers, body)
            if not path.startswith("/api/"):
                return 404, {}, {"errorMessage": "Endpoint not found"}
            if not self._authenticated(headers):
                return 401, {}, {"status": 401, "message": "Authentication Failed"}
            data, err = parse_body(headers, body)
            if err:
                return 400, {}, {"status": 400, "message": err}
            data = {**query, **(data or {})}
            parts = [p for p in path[len("/api/"):].split("/") if p != ""]
            self.requests.append({"method": method, "path": path})
            if len(parts) < 3:
                return 404, {}, {"errorMessage": "Endpoint not found"}
            module, controller, command, params = parts[0].lower(), _norm(parts[1]), _norm(parts[2]), parts[3:]
            route = {
                ("core", "firmware"): self._firmware,
                ("interfaces", "vlansettings"): self._vlan,
                ("interfaces", "assignment"): self._assignment,
                ("firewall", "filter"): self._filter,
                **self._services_routes(),
            }.get((module, controller))
            if route is None or (controller == "assignment" and not self.has_assignment_api):
                return 404, {}, {"errorMessage": "Endpoint not found"}
            result = route(method, command, params, data)
            if result is None:
                return 404, {}, {"errorMessage": "Endpoint not found"}
            if isinstance(result, tuple):
                return result
            return 200, {}, result

    def _authenticated(self, headers) -> bool:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "basic" or not token:
            return False
        try:
            key, _, secret = base64.b64decode(token).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return bool(key) and self.settings["credentials"].get(key) == secret

    def _inspect(self, method, what, headers, body):
        data, _ = parse_body({"content-type": "application/json"}, body)
        if what == "state" and method == "GET":
            return 200, {}, self.snapshot()
        if what == "reset" and method == "POST":
            self.reset()
            return 200, {}, {"status": "ok"}
        if what == "seed" and method == "POST":
            self.settings.update(data or {})
            return 200, {}, {"status": "ok"}
        if what == "assign" and method == "POST":
            # {"identifier": "opt9", "if": "vlan01", "descr": "X"} straight into the running config
            data = dict(data or {})
            ident = data.pop("identifier")
            self.interfaces[ident] = {**ASSIGN_DEFAULTS, "lock": "0", **data}
            return 200, {}, {"status": "ok"}
        return 404, {}, {"errorMessage": "unknown emulator hook"}

    @staticmethod
    def _error(message: str, code: int = 500):
        return code, {}, {"errorMessage": message, "errorTitle": ""}

    # ------------------------------------------------------------------ core/firmware
    def _firmware(self, method, command, params, data):
        if command not in ("status", "info"):
            return None
        version = self.settings["version"]
        series = ".".join(version.split(".")[:2])
        product = {"product_id": "opnsense", "product_name": "OPNsense", "product_version": version,
                   "product_series": series, "product_abi": series, "product_check": None}
        if command == "info":
            return {"product_id": "opnsense", "product_version": version, "package": [], "plugin": [],
                    "changelog": [], "product": product}
        if _version_tuple(version) < (23, 1):
            return {"api_version": "2", "connection": "ok", "product_id": "opnsense",
                    "product_version": version, "repository": "ok", "status": "none",
                    "status_msg": "There are no updates available on the selected mirror."}
        return {"product": product, "status": "none",
                "status_msg": "Firmware status requires to check for update first to provide more information."}

    # ------------------------------------------------------------------ helpers
    def _assigned_names(self) -> dict:
        return {v.get("if"): (v.get("descr") or k.upper()) for k, v in self.interfaces.items()}

    def _interface_assigned(self, device: str) -> bool:
        return any(v.get("if") == device for v in self.interfaces.values())

    @staticmethod
    def _search(records: list[dict], data: dict, fields: list[str]) -> dict:
        phrase = str(data.get("searchPhrase", "") or "")
        tokens = [t.lower() for t in phrase.split() if t]
        rows = []
        for row in records:
            if tokens and not all(any(t in str(row.get("%" + f, row.get(f, ""))).lower() for f in fields)
                                  for t in tokens):
                continue
            rows.append(row)
        try:
            per_page = int(data.get("rowCount", -1))
            current = int(data.get("current", 1))
        except (TypeError, ValueError):
            per_page, current = -1, 1
        page = rows if per_page == -1 else rows[(current - 1) * per_page: current * per_page]
        return {"rows": page, "rowCount": len(page), "total": len(rows), "current": current}

    # ------------------------------------------------------------------ interfaces/vlan_settings
    def _vlan_validate(self, uuid: str, node: dict) -> dict:
        errors = {}
        parent = node.get("if", "")
        vlan_devices = {v["vlanif"] for k, v in self.vlans.items() if k != uuid}
        if not parent:
            errors["vlan.if"] = "A value is required."
        elif parent not in self.settings["devices"] and parent not in vlan_devices:
            errors["vlan.if"] = "Option not in list."
        tag = str(node.get("tag", ""))
        if tag == "":
            errors["vlan.tag"] = "A value is required."
        elif not tag.isdigit() or not 1 <= int(tag) <= 4094:
            errors["vlan.tag"] = "Value should be between 1 and 4094."
        elif any(k != uuid and v["if"] == parent and str(v["tag"]) == tag for k, v in self.vlans.items()):
            errors["vlan.tag"] = "Tag for this device must be unique."
        if str(node.get("pcp", "0")) not in PCP_DESCR:
            errors["vlan.pcp"] = "Option not in list."
        if node.get("proto", "") not in ("", "802.1q", "802.1ad"):
            errors["vlan.proto"] = "Option not in list."
        if not node.get("vlanif"):
            errors["vlan.vlanif"] = "A value is required."
        elif node["vlanif"] in vlan_devices:
            errors["vlan.vlanif"] = "The device name must be unique."
        return errors

    def _vlan_ifname(self, posted: dict, current: dict | None) -> str:
        # mirrors VlanSettingsController::generateVlanIfName
        parent = posted.get("if", current.get("if", "") if current else "")
        tag = posted.get("tag", current.get("tag", "") if current else "")
        prefix = "qinq" if "vlan" in parent else "vlan"
        if posted.get("vlanif"):
            return posted["vlanif"]
        if current is not None and current["vlanif"] == f"{parent}_vlan{tag}":
            return f"{parent}_vlan{tag}"
        if current is not None and "_vlan" not in current["vlanif"] and current["vlanif"].startswith(prefix):
            return current["vlanif"]
        ifid = 0
        for v in self.vlans.values():
            if re.match(rf"^{prefix}\d+$", v["vlanif"]):
                ifid = max(ifid, int(re.sub(r"\D", "", v["vlanif"])))
        return f"{prefix}0{ifid + 1}"

    @staticmethod
    def _vlan_fields(posted: dict) -> dict:
        return {k: str(posted[k]) for k in ("if", "tag", "pcp", "proto", "descr", "vlanif") if k in posted}

    def _vlan_row(self, uuid: str, v: dict, names: dict) -> dict:
        row = {"uuid": uuid, **v}
        row["%pcp"] = PCP_DESCR.get(v["pcp"], v["pcp"])
        if v["proto"] == "":
            row["%proto"] = "Automatic"
        if v["vlanif"] in names:
            row["vlanif"] = f"{v['vlanif']} [{names[v['vlanif']]}]"
        return row

    def _vlan(self, method, command, params, data):
        if command == "searchitem":
            names = self._assigned_names()
            records = [self._vlan_row(u, v, names)
                       for u, v in sorted(self.vlans.items(), key=lambda kv: kv[1]["vlanif"])]
            return self._search(records, data, ["if", "tag", "pcp", "proto", "descr", "vlanif"])
        if command == "get":
            return {"vlan": {"vlan": copy.deepcopy(self.vlans)}}
        if command == "getitem":
            if params and params[0] in self.vlans:
                return {"vlan": copy.deepcopy(self.vlans[params[0]])}
            if not params:
                return {"vlan": {"if": "", "tag": "", "pcp": "0", "proto": "", "descr": "", "vlanif": ""}}
            return []
        if command == "additem":
            posted = data.get("vlan")
            if method != "POST" or not isinstance(posted, dict):
                return {"result": "failed"}
            node = {"if": "", "tag": "", "pcp": "0", "proto": "", "descr": "", "vlanif": ""}
            node.update(self._vlan_fields(posted))
            node["vlanif"] = self._vlan_ifname(posted, None)
            uuid = str(uuidlib.uuid4())
            errors = self._vlan_validate(uuid, node)
            if errors:
                return {"result": "failed", "validations": errors}
            self.vlans[uuid] = node
            self.counters["writes"] += 1
            return {"result": "saved", "uuid": uuid}
        if command == "setitem":
            posted = data.get("vlan")
            if method != "POST" or not isinstance(posted, dict) or not params:
                return {"result": "failed"}
            uuid = params[0]
            current = self.vlans.get(uuid)
            old_vlanif = current["vlanif"] if current else None
            new_vlanif = self._vlan_ifname(posted, current)
            children = sum(1 for v in self.vlans.values() if old_vlanif and v["if"] == old_vlanif)
            if old_vlanif and old_vlanif != new_vlanif and children:
                return {"result": "failed", "validations": {
                    "vlan.vlanif": "This VLAN cannot be deleted because it is used in QinQ interfaces."}}
            if old_vlanif and old_vlanif != new_vlanif and self._interface_assigned(old_vlanif):
                if str(posted.get("tag", current["tag"])) != current["tag"]:
                    msg = {"vlan.tag": "Interface is assigned and you cannot change the VLAN tag while assigned."}
                else:
                    msg = {"vlan.vlanif": "Interface is assigned and you cannot change the device name while assigned."}
                return {"result": "failed", "validations": msg}
            if current is None:
                try:
                    uuidlib.UUID(uuid)
                except ValueError:
                    return {"result": "failed"}
                node = {"if": "", "tag": "", "pcp": "0", "proto": "", "descr": "", "vlanif": ""}
            else:
                node = dict(current)
            node.update(self._vlan_fields(posted))
            node["vlanif"] = new_vlanif
            errors = self._vlan_validate(uuid, node)
            if errors:
                return {"result": "failed", "validations": errors}
            self.vlans[uuid] = node
            self.counters["writes"] += 1
            return {"result": "saved"}
        if command == "delitem":
            if method != "POST":
                return {"result": "failed"}
            uuids = params[0].split(",") if params else []
            for uuid in uuids:
                old = self.vlans.get(uuid, {}).get("vlanif")
                if old and any(v["if"] == old for v in self.vlans.values()):
                    return self._error("This VLAN cannot be deleted because it is used in QinQ interfaces.")
                if old and self._interface_assigned(old):
                    return self._error("This VLAN cannot be deleted because it is assigned as an interface.")
            result = {"result": "failed"}
            for uuid in uuids:
                if self.vlans.pop(uuid, None) is not None:
                    result["result"] = "deleted"
                    self.counters["writes"] += 1
                else:
                    result["result"] = "not found"
            return result
        if command == "reconfigure":
            if method != "POST":
                return {"status": "failed"}
            self.running["vlans"] = copy.deepcopy(self.vlans)
            self.counters["vlan_reconfigure"] += 1
            return {"status": "ok"}
        return None

    # ------------------------------------------------------------------ interfaces/assignment (26.7+)
    def _assignment_model(self) -> dict:
        model = {}
        for key, intf in self.interfaces.items():
            todo = self.if_todo.get(key, {})
            if todo.get("pending_action") == "delete":
                continue
            data = {**ASSIGN_DEFAULTS, **(todo.get("pending") or intf)}
            model[key] = {**data, "identifier": key, "pending_action": todo.get("pending_action", "")}
        return model

    def _assignment_validate(self, key: str, node: dict, model: dict) -> dict:
        errors = {}
        if not re.match(r"^[a-z_0-9]{0,255}$", node.get("descr", ""), re.I):
            errors["interface.descr"] = "Invalid description."
        dev = node.get("if", "")
        known = set(self.settings["devices"]) | {v["vlanif"] for v in self.vlans.values()}
        if not dev:
            errors["interface.if"] = "A value is required."
        elif dev not in known:
            errors["interface.if"] = "Option not in list."
        elif any(k != key and v.get("if") == dev for k, v in model.items()):
            errors["interface.if"] = "Can not assign a device to more interfaces."
        if node.get("type4") not in ("none", "staticv4", "dhcp", "ppp", "pppoe", "pptp", "l2tp"):
            errors["interface.type4"] = "Option not in list."
        if node.get("ipaddr"):
            try:
                if "/" not in node["ipaddr"]:
                    raise ValueError
                ipaddress.IPv4Interface(node["ipaddr"])
            except ValueError:
                errors["interface.ipaddr"] = "Please specify a valid network segment or address (IPv4) with netmask."
        if node.get("type4") == "staticv4" and not node.get("ipaddr"):
            errors["interface.ipaddr"] = "A value is required."
        for flag in ("enable", "lock"):
            if str(node.get(flag, "0")) not in ("0", "1"):
                errors[f"interface.{flag}"] = "Value is not a valid boolean."
        return errors

    @staticmethod
    def _assign_fields(posted: dict) -> dict:
        return {k: str(v) for k, v in posted.items() if k in ASSIGN_DEFAULTS}

    def _assignment(self, method, command, params, data):
        model = self._assignment_model()
        if command == "searchitem":
            records = [{"uuid": k, **v} for k, v in model.items()]
            return self._search(records, data, ["descr", "identifier", "if"])
        if command == "getitem":
            if params and params[0] in model:
                return {"interface": model[params[0]]}
            return [] if params else {"interface": dict(ASSIGN_DEFAULTS)}
        if command == "additem":
            posted = data.get("interface")
            if method != "POST" or not isinstance(posted, dict):
                return {"result": "failed"}
            node = {**ASSIGN_DEFAULTS, **self._assign_fields(posted)}
            errors = self._assignment_validate("", node, model)
            if errors:
                return {"result": "failed", "validations": errors}
            n = 1
            while f"opt{n}" in self.interfaces:
                n += 1
            key = f"opt{n}"
            self.interfaces[key] = {"if": node["if"], "descr": node["descr"]}  # anchor registered at once
            self.if_todo[key] = {"pending": node, "pending_action": "update"}
            self.counters["writes"] += 1
            return {"result": "saved", "uuid": key}
        if command == "setitem":
            posted = data.get("interface")
            if method != "POST" or not isinstance(posted, dict) or not params or params[0] not in model:
                return {"result": "failed"}
            key = params[0]
            current = {k: v for k, v in model[key].items() if k in ASSIGN_DEFAULTS}
            node = {**current, **self._assign_fields(posted)}
            errors = self._assignment_validate(key, node, model)
            if errors:
                return {"result": "failed", "validations": errors}
            action = "relink" if node["if"] != self.interfaces[key].get("if") else "update"
            self.interfaces[key]["descr"] = node["descr"]
            if node != current or key in self.if_todo:
                self.if_todo[key] = {"pending": node, "pending_action": action}
            self.counters["writes"] += 1
            return {"result": "saved"}
        if command == "delitem":
            if method != "POST":
                return {"status": "failed"}
            names = params[0].split(",") if params else []
            for key in names:
                if self.interfaces.get(key, {}).get("lock") == "1":
                    return self._error("Interface locked, unset lock first before removal")
            result = {"result": "failed"}
            for key in names:
                if key in model:
                    self.if_todo[key] = {"pending_action": "delete"}
                    result["result"] = "deleted"
                    self.counters["writes"] += 1
                else:
                    result["result"] = "not found"
            return result
        if command == "reconfigure":
            if method != "POST":
                return {"status": "failed"}
            for key, todo in list(self.if_todo.items()):
                if key not in self.interfaces:
                    continue
                if todo.get("pending_action") == "delete":
                    # like cleanRules(): drop the interface from rules, delete rules left without one
                    for uuid, rule in list(self.rules.items()):
                        ifs = [i for i in rule["interface"].split(",") if i]
                        if key in ifs:
                            rest = [i for i in ifs if i != key]
                            if rest:
                                rule["interface"] = ",".join(rest)
                            else:
                                del self.rules[uuid]
                    del self.interfaces[key]
                else:
                    self.interfaces[key] = {k: v for k, v in todo["pending"].items() if v != ""}
                    for flag in ("enable", "lock"):
                        self.interfaces[key].setdefault(flag, "0")
            self.if_todo = {}
            self.counters["assignment_reconfigure"] += 1
            return {"status": "ok"}
        return None

    # ------------------------------------------------------------------ firewall/filter
    def _net_ok(self, value: str) -> bool:
        if value in ("", "any", "(self)"):
            return value != ""
        for part in value.split(","):
            base = part[:-3] if part.endswith("net") or part.endswith("ip") else part
            if base in self.interfaces or part in self.interfaces:
                continue
            try:
                ipaddress.ip_network(part, strict=False)
                continue
            except ValueError:
                pass
            if not ALIAS_RE.match(part):
                return False
        return True

    @staticmethod
    def _port_ok(value: str) -> bool:
        if value == "":
            return True
        for part in value.split(","):
            m = re.match(r"^(\d+)(?:[-:](\d+))?$", part)
            if m:
                if not all(1 <= int(g) <= 65535 for g in m.groups() if g):
                    return False
            elif not ALIAS_RE.match(part):
                return False
        return True

    def _rule_validate(self, node: dict) -> dict:
        errors = {}
        if node["action"] not in ("pass", "block", "reject"):
            errors["rule.action"] = "Option not in list."
        if node["direction"] not in ("in", "out", "any"):
            errors["rule.direction"] = "Option not in list."
        if node["ipprotocol"] not in ("inet", "inet6", "inet46"):
            errors["rule.ipprotocol"] = "Option not in list."
        if node["protocol"] not in PROTOCOLS:
            errors["rule.protocol"] = "Option not in list."
        for f in ("enabled", "quick", "log", "source_not", "destination_not", "interfacenot"):
            if node[f] not in ("0", "1"):
                errors[f"rule.{f}"] = "Value is not a valid boolean."
        if not node["sequence"].isdigit() or not 1 <= int(node["sequence"]) <= 999999:
            errors["rule.sequence"] = "Value should be between 1 and 999999."
        for ifname in [i for i in node["interface"].split(",") if i]:
            if ifname not in self.interfaces:
                errors["rule.interface"] = "Option not in list."
        for f in ("source_net", "destination_net"):
            if not self._net_ok(node[f]):
                errors[f"rule.{f}"] = f"{node[f]} is not a valid source IP address or alias."
        for f in ("source_port", "destination_port"):
            if not self._port_ok(node[f]):
                errors[f"rule.{f}"] = f"{node[f]} is not a valid port or alias."
            elif node[f] and node["protocol"] not in ("TCP", "UDP", "TCP/UDP"):
                errors[f"rule.{f}"] = "Ports are only valid for tcp or udp type rules."
        return errors

    @staticmethod
    def _rule_fields(posted: dict) -> dict:
        out = {k: str(v) for k, v in posted.items() if k in RULE_DEFAULTS}
        if "protocol" in out and out["protocol"].lower() != "any":
            out["protocol"] = out["protocol"].upper()  # ProtocolField changes case to UPPER
        if "protocol" in out and out["protocol"].lower() == "any":
            out["protocol"] = "any"
        return out

    def _filter(self, method, command, params, data):
        if command == "searchrule":
            wanted = None
            if "interface" in data:
                wanted = [i for i in str(data["interface"]).split(",") if i]
            records = []
            for uuid, rule in sorted(self.rules.items(), key=lambda kv: int(kv[1]["sequence"])):
                ifs = [i for i in rule["interface"].split(",") if i]
                if wanted is not None and ifs and wanted and not set(ifs) & set(wanted):
                    continue
                records.append({"uuid": uuid, **rule})
            # non-MVC internal rule, as the real searchRule merges them in
            records.append({"uuid": "0bd5f5d6a1cb8d1c5e0a7f1b1e8a8f00", "legacy": True, "action": "block",
                            "interface": "", "description": "Default deny / state violation rule",
                            "sequence": "0", "enabled": "1"})
            return self._search(records, data, ["description", "source_net", "destination_net"])
        if command == "getrule":
            if params and params[0] in self.rules:
                return {"rule": copy.deepcopy(self.rules[params[0]])}
            return [] if params else {"rule": dict(RULE_DEFAULTS)}
        if command == "addrule":
            posted = data.get("rule")
            if method != "POST" or not isinstance(posted, dict):
                return {"result": "failed"}
            node = {**RULE_DEFAULTS, **self._rule_fields(posted)}
            errors = self._rule_validate(node)
            if errors:
                return {"result": "failed", "validations": errors}
            uuid = str(uuidlib.uuid4())
            self.rules[uuid] = node
            self.counters["writes"] += 1
            return {"result": "saved", "uuid": uuid}
        if command == "setrule":
            posted = data.get("rule")
            if method != "POST" or not isinstance(posted, dict) or not params:
                return {"result": "failed"}
            current = self.rules.get(params[0])
            if current is None:
                try:
                    uuidlib.UUID(params[0])
                except ValueError:
                    return {"result": "failed"}
                current = dict(RULE_DEFAULTS)
            node = {**current, **self._rule_fields(posted)}
            errors = self._rule_validate(node)
            if errors:
                return {"result": "failed", "validations": errors}
            self.rules[params[0]] = node
            self.counters["writes"] += 1
            return {"result": "saved"}
        if command == "delrule":
            if method != "POST":
                return {"result": "failed"}
            result = {"result": "failed"}
            for uuid in (params[0].split(",") if params else []):
                if self.rules.pop(uuid, None) is not None:
                    result["result"] = "deleted"
                    self.counters["writes"] += 1
                else:
                    result["result"] = "not found"
            return result
        if command == "apply":
            if method != "POST":
                return {"status": "error"}
            self.running["rules"] = copy.deepcopy(self.rules)
            self.counters["filter_apply"] += 1
            return {"status": "OK\n\n"}
        return None


if __name__ == "__main__":
    run_standalone(OPNsenseEmulator, 8443)
