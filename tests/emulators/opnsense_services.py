"""Kea DHCPv4 and Unbound endpoints of the OPNsense API emulator — a test double, not OPNsense.

Mixed into ``OPNsenseEmulator`` (opnsense_emulator.py). Endpoints and fields follow:

* https://docs.opnsense.org/development/api/core/kea.html -- ``kea/dhcpv4`` ``get``, ``set`` (``general``:
  ``enabled``, ``interfaces`` = assigned interface identifiers), ``search_subnet``, ``add_subnet``,
  ``set_subnet/$uuid``, ``del_subnet/$uuid``, ``get_subnet``, ``search_reservation``, ``add_reservation``,
  ``set_reservation/$uuid``, ``del_reservation/$uuid``, ``get_reservation``; ``kea/service/reconfigure``.
  Fields and constraints from the model ``OPNsense/Kea/KeaDhcpv4.xml`` (opnsense/core): ``subnet4.subnet`` is a
  unique IPv4 network with mask ("Subnet must be unique."); ``option_data.routers`` and
  ``option_data.domain_name_servers`` are IPv4 addresses without mask; ``reservation.subnet`` must name an
  existing subnet ("Related subnet not found."); ``reservation.ip_address`` is unique ("Duplicate entry
  exists."); ``reservation.hw_address`` is a MAC, unique per subnet, compared case-insensitively; the
  reservation's address must lie inside its subnet.
* https://docs.opnsense.org/development/api/core/unbound.html -- ``unbound/settings`` ``search_host_override``,
  ``add_host_override``, ``set_host_override/$uuid``, ``del_host_override/$uuid``, ``get_host_override``;
  ``unbound/service/reconfigure``. Fields from ``OPNsense/Unbound/Unbound.xml``: ``hosts.host`` with
  ``enabled``, ``hostname`` (DNS label), ``domain`` (required, domain mask "A valid domain must be
  specified."), ``rr`` (A, AAAA, MX), ``server`` (required for A/AAAA: "The field IP address is required."),
  ``description``.

Writes change the configuration only; the "running" copy changes on the service's ``reconfigure``, as on
the real firewall, so a test can tell a write that was never applied.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import uuid as uuidlib

MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$", re.I)
LABEL_RE = re.compile(r"^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$", re.I)
DOMAIN_RE = re.compile(r"^(?:(?:[a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*(?:[a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$",
                       re.I)
SUBNET_DEFAULTS = {"subnet": "", "valid_lifetime": "", "next_server": "", "option_data_autocollect": "1",
                   "option_data": {"domain_name_servers": "", "domain_search": "", "routers": "",
                                   "domain_name": "", "ntp_servers": ""},
                   "match-client-id": "1", "pools": "", "description": ""}
RES_DEFAULTS = {"subnet": "", "ip_address": "", "hw_address": "", "client_id": "", "hostname": "",
                "description": ""}
HOST_DEFAULTS = {"enabled": "1", "hostname": "", "domain": "", "rr": "A", "mxprio": "", "mx": "", "ttl": "",
                 "server": "", "description": ""}


def _ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False


class ServicesMixin:
    """kea/dhcpv4, kea/service, unbound/settings, unbound/service."""

    def _services_reset(self) -> None:
        self.kea = {"general": {"enabled": "0", "interfaces": ""}, "subnets": {}, "reservations": {}}
        self.unbound = {"hosts": {}}
        self.running.update({"kea": copy.deepcopy(self.kea), "unbound": {"hosts": {}}})
        self.counters.update({"kea_reconfigure": 0, "unbound_reconfigure": 0})

    def _services_routes(self) -> dict:
        return {("kea", "dhcpv4"): self._kea, ("kea", "service"): self._kea_service,
                ("unbound", "settings"): self._unbound, ("unbound", "service"): self._unbound_service}

    # ------------------------------------------------------------------ generic array-field CRUD
    def _crud(self, store: dict, defaults: dict, wrap: str, validate, method, verb, params, data):
        """verb in search/get/add/set/del, the way ApiMutableModelControllerBase answers them."""
        if verb == "search":
            rows = [{"uuid": u, **self._display(wrap, r)} for u, r in store.items()]
            return self._search(rows, data, list(defaults))
        if verb == "get":
            if params and params[0] in store:
                return {wrap: copy.deepcopy(store[params[0]])}
            return [] if params else {wrap: copy.deepcopy(defaults)}
        if verb in ("add", "set"):
            posted = data.get(wrap)
            if method != "POST" or not isinstance(posted, dict) or (verb == "set" and not params):
                return {"result": "failed"}
            key = params[0] if verb == "set" else str(uuidlib.uuid4())
            if verb == "set" and key not in store:
                return {"result": "failed"}
            node = copy.deepcopy(store.get(key) or defaults)
            for k, v in posted.items():
                if k not in defaults:
                    continue
                if isinstance(defaults[k], dict):
                    node[k].update({kk: str(vv) for kk, vv in (v or {}).items() if kk in defaults[k]})
                else:
                    node[k] = str(v)
            errors = validate(key, node)
            if errors:
                return {"result": "failed", "validations": errors}
            store[key] = node
            self.counters["writes"] += 1
            return {"result": "saved", "uuid": key} if verb == "add" else {"result": "saved"}
        if verb == "del":
            if method != "POST":
                return {"result": "failed"}
            if params and store.pop(params[0], None) is not None:
                self.counters["writes"] += 1
                return {"result": "deleted"}
            return {"result": "not found"}
        return None

    def _display(self, wrap: str, row: dict) -> dict:
        out = copy.deepcopy(row)
        if wrap == "reservation":
            out["%subnet"] = self.kea["subnets"].get(row["subnet"], {}).get("subnet", "")
        return out

    @staticmethod
    def _verb(command: str, noun: str):
        for verb in ("search", "get", "add", "set", "del"):
            if command == verb + noun:
                return verb
        return None

    # ------------------------------------------------------------------ kea
    def _subnet_validate(self, key: str, node: dict) -> dict:
        errors = {}
        try:
            if "/" not in node["subnet"]:
                raise ValueError
            net = ipaddress.IPv4Network(node["subnet"], strict=False)
        except ValueError:
            errors["subnet4.subnet"] = "A value is required." if not node["subnet"] else \
                "Please specify a valid network segment or IP address."
            net = None
        if net is not None and any(k != key and s["subnet"] == node["subnet"] for k, s in self.kea["subnets"].items()):
            errors["subnet4.subnet"] = "Subnet must be unique."
        for f in ("routers", "domain_name_servers"):
            vals = [x for x in node["option_data"][f].split(",") if x]
            if not all(_ipv4(x) for x in vals):
                errors[f"subnet4.option_data.{f}"] = "Please specify a valid IP address."
        if node["option_data"]["domain_name"] and not DOMAIN_RE.match(node["option_data"]["domain_name"]):
            errors["subnet4.option_data.domain_name"] = "Please specify a valid hostname or domain."
        for line in [x.strip() for x in node["pools"].splitlines() if x.strip()]:
            lo, _, hi = line.partition("-")
            if not (_ipv4(lo.strip()) and _ipv4(hi.strip())) and "/" not in line:
                errors["subnet4.pools"] = f"Entry \"{line}\" is not a valid range or subnet."
        if node["option_data_autocollect"] not in ("0", "1"):
            errors["subnet4.option_data_autocollect"] = "Value is not a valid boolean."
        return errors

    def _reservation_validate(self, key: str, node: dict) -> dict:
        errors = {}
        subnet = self.kea["subnets"].get(node["subnet"])
        if subnet is None:
            errors["reservation.subnet"] = "Related subnet not found."
        if not _ipv4(node["ip_address"]):
            errors["reservation.ip_address"] = "Please specify a valid IP address."
        elif any(k != key and r["ip_address"] == node["ip_address"] for k, r in self.kea["reservations"].items()):
            errors["reservation.ip_address"] = "Duplicate entry exists."
        elif subnet is not None and ipaddress.IPv4Address(node["ip_address"]) not in \
                ipaddress.IPv4Network(subnet["subnet"], strict=False):
            errors["reservation.ip_address"] = "Address not in specified subnet."
        mac = node["hw_address"].lower().replace("-", ":")
        if mac and not MAC_RE.match(mac):
            errors["reservation.hw_address"] = "Invalid MAC address."
        elif mac and any(k != key and r["subnet"] == node["subnet"] and r["hw_address"].lower() == mac
                         for k, r in self.kea["reservations"].items()):
            errors["reservation.hw_address"] = "Duplicate entry exists."
        if node["hostname"] and not LABEL_RE.match(node["hostname"]):
            errors["reservation.hostname"] = "Please specify a valid hostname."
        return errors

    def _kea_general(self, method, command, data):
        """``get`` shows option fields as {key: {value, selected}} like every MVC ``get``; ``set`` takes the
        selection as a comma-separated string; interfaces must be assigned ones (InterfaceField)."""
        general = self.kea["general"]
        if command == "get":
            chosen = [i for i in general["interfaces"].split(",") if i]
            ifs = {k: {"value": (v.get("descr") or k.upper()), "selected": 1 if k in chosen else 0}
                   for k, v in self.interfaces.items()}
            return {"dhcpv4": {"general": {"enabled": general["enabled"], "interfaces": ifs}}}
        posted = ((data.get("dhcpv4") or {}).get("general")) if isinstance(data.get("dhcpv4"), dict) else None
        if method != "POST" or not isinstance(posted, dict):
            return {"result": "failed"}
        node = dict(general, **{k: str(v) for k, v in posted.items() if k in general})
        errors = {}
        if node["enabled"] not in ("0", "1"):
            errors["dhcpv4.general.enabled"] = "Value is not a valid boolean."
        if any(i not in self.interfaces for i in node["interfaces"].split(",") if i):
            errors["dhcpv4.general.interfaces"] = "Option not in list."
        if errors:
            return {"result": "failed", "validations": errors}
        self.kea["general"] = node
        self.counters["writes"] += 1
        return {"result": "saved"}

    def _kea(self, method, command, params, data):
        if command in ("get", "set"):
            return self._kea_general(method, command, data)
        for noun, store, defaults, wrap, validate in (
                ("subnet", self.kea["subnets"], SUBNET_DEFAULTS, "subnet4", self._subnet_validate),
                ("reservation", self.kea["reservations"], RES_DEFAULTS, "reservation", self._reservation_validate)):
            verb = self._verb(command, noun)
            if verb is not None:
                if verb == "del" and noun == "subnet" and params and any(
                        r["subnet"] == params[0] for r in self.kea["reservations"].values()):
                    return self._error("Subnet is still in use by reservations.")
                return self._crud(store, defaults, wrap, validate, method, verb, params, data)
        return None

    def _kea_service(self, method, command, params, data):
        if command != "reconfigure":
            return None
        if method != "POST":
            return {"status": "failed"}
        self.running["kea"] = copy.deepcopy(self.kea)
        self.counters["kea_reconfigure"] += 1
        return {"status": "ok"}

    # ------------------------------------------------------------------ unbound
    def _host_validate(self, key: str, node: dict) -> dict:
        errors = {}
        if node["hostname"] and not LABEL_RE.match(node["hostname"]):
            errors["host.hostname"] = "Please specify a valid hostname."
        if not node["domain"]:
            errors["host.domain"] = "A value is required."
        elif not DOMAIN_RE.match(node["domain"]):
            errors["host.domain"] = "A valid domain must be specified."
        if node["rr"] not in ("A", "AAAA", "MX"):
            errors["host.rr"] = "Option not in list."
        elif node["rr"] in ("A", "AAAA"):
            try:
                ip = ipaddress.ip_address(node["server"])
                if (ip.version == 4) != (node["rr"] == "A"):
                    errors["host.server"] = "Please specify a valid IP address."
            except ValueError:
                errors["host.server"] = "The field IP address is required." if not node["server"] else \
                    "Please specify a valid IP address."
        if node["enabled"] not in ("0", "1"):
            errors["host.enabled"] = "Value is not a valid boolean."
        return errors

    def _unbound(self, method, command, params, data):
        verb = self._verb(command, "hostoverride")
        if verb is None:
            return None
        return self._crud(self.unbound["hosts"], HOST_DEFAULTS, "host", self._host_validate, method, verb,
                          params, data)

    def _unbound_service(self, method, command, params, data):
        if command != "reconfigure":
            return None
        if method != "POST":
            return {"status": "failed"}
        self.running["unbound"] = copy.deepcopy(self.unbound)
        self.counters["unbound_reconfigure"] += 1
        return {"status": "ok"}
