"""homelab-ai: the home automation roles' rules (mosquitto, homelab_ha_runtime, ha_bridge, vision_notifier), part
of the shared role rules (homelab_rules.py collects them in RULES; validation and every preflight run the same
code). Each rule takes the variables the role resolves on one host and returns ``(field, reason)`` problems.

Two inputs are not role variables but what the inventory says around the role, passed in by both callers:

* ``ha_bridge_known_hosts``: the Netdata names of the hosts of group netdata (what the parent can serve); an
  empty list (no group netdata, e.g. a Molecule scenario with its own hosts) is not checked;
* ``vision_notifier_router_models``: the model names the site's router answers (routes, aliases, model ids,
  homelab/<bucket>, homelab/auto), from the filter ``homelab_router_model_names``; None when not checkable
  (no routes in the inventory, or router_route_unknown_models lets any name through).
"""
from __future__ import annotations

import importlib.util
import ipaddress
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _load_sibling(name: str):
    """A module next to this file (Ansible loads filter files without a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_values = _load_sibling("homelab_values")
_int, _num, _port, _text, _list, _bool = (_values._int, _values._num, _values._port, _values._text,
                                          _values._list, _values._bool)
is_network = _values.is_network
Problem = tuple[str, str]

MQTT_USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ACL_ACCESS = ("read", "write", "readwrite")
PIN_RE = re.compile(r"^[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+$")
LOOPBACK = ("localhost",)


def _password_problem(field: str, user: Any) -> Problem:
    return (field, f"is required: set vault_mosquitto_passwords[{user!r}] in the vault (the broker user "
                   f"{user!r} of this client; the value itself is not shown)")


def _mqtt_port(v: Mapping[str, Any], key: str) -> list[Problem]:
    return [] if _port(v.get(key)) else [(key, f"must be a port 1-65535, got {v.get(key)!r}")]


def _positive_int(v: Mapping[str, Any], key: str, minimum: int = 1) -> list[Problem]:
    n = _int(v.get(key))
    return [] if n is not None and n >= minimum else [(key, f"must be an integer >= {minimum}, got {v.get(key)!r}")]


# ------------------------------------------------------------------------------------------------
# mosquitto

def rules_mosquitto(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    users, passwords = v.get("mosquitto_users"), v.get("mosquitto_passwords")
    passwords = passwords if isinstance(passwords, Mapping) else {}
    if not _list(users) or not users:
        out.append(("mosquitto_users", "must be a non-empty list of {name, acl} (one broker user per client)"))
        users = []
    names: dict[str, int] = {}
    for i, u in enumerate(users):
        f = f"mosquitto_users[{i}]"
        if not isinstance(u, Mapping):
            out.append((f, "must be a mapping {name, acl}"))
            continue
        name = u.get("name")
        if not (isinstance(name, str) and MQTT_USER_RE.match(name)):
            out.append((f"{f}.name", f"is required: 1-64 characters of [A-Za-z0-9_.-], got {name!r}"))
        elif name in names:
            out.append((f"{f}.name", f"user {name!r} is also mosquitto_users[{names[name]}]"))
        else:
            names[name] = i
            if not passwords.get(name):
                out.append((f"{f}.name", f"user {name!r} has no password: set vault_mosquitto_passwords[{name!r}] "
                                         "in the vault (the value itself is not shown)"))
        acl = u.get("acl")
        if not _list(acl) or not acl:
            out.append((f"{f}.acl", f"user {name!r}: must be a non-empty list of {{access, topic}}"))
            continue
        for j, a in enumerate(acl):
            if not (isinstance(a, Mapping) and a.get("access") in ACL_ACCESS):
                got = a.get("access") if isinstance(a, Mapping) else a
                out.append((f"{f}.acl[{j}].access", f"user {name!r}: must be read, write or readwrite, got {got!r}"))
            if not (isinstance(a, Mapping) and _text(a.get("topic")) and not re.search(r"\s", a["topic"].strip())):
                out.append((f"{f}.acl[{j}].topic", f"user {name!r}: is required, an MQTT topic filter without spaces"))
    out += _mqtt_port(v, "mosquitto_port")
    if _bool(v.get("mosquitto_tls_enabled", False)):
        out += _mqtt_port(v, "mosquitto_tls_port")
        if _port(v.get("mosquitto_tls_port")) and _int(v.get("mosquitto_tls_port")) == _int(v.get("mosquitto_port")):
            out.append(("mosquitto_tls_port", "must differ from mosquitto_port (the plain listener)"))
        for key in ("mosquitto_tls_cert_file", "mosquitto_tls_key_file"):
            if not _text(v.get(key)):
                out.append((key, "is required while mosquitto_tls_enabled is true (a file already on the host)"))
        if not v.get("mosquitto_bind_addresses"):
            out.append(("mosquitto_bind_addresses", "is empty (no homelab_address on this host), so the TLS "
                                                    "listener would bind nowhere: set homelab_address or "
                                                    "mosquitto_bind_addresses"))
    binds = v.get("mosquitto_bind_addresses")
    if binds is not None and not _list(binds):
        out.append(("mosquitto_bind_addresses", "must be a list of addresses"))
    else:
        out += [("mosquitto_bind_addresses", f"{a!r} is not an IPv4/IPv6 address") for a in binds or []
                if not _is_address(a)]
    if _bool(v.get("mosquitto_firewall_enabled", True)):
        src = v.get("mosquitto_firewall_sources")
        if not _list(src) or not src:
            out.append(("mosquitto_firewall_sources", "must be a non-empty list of IPv4/IPv6 addresses or CIDRs: set "
                                                      "homelab_client_cidrs (the client networks), or "
                                                      "mosquitto_firewall_enabled: false"))
        else:
            out += [("mosquitto_firewall_sources", f"{c!r} is not an IPv4/IPv6 address or CIDR")
                    for c in src if not is_network(c)]
    return out


def _is_address(a: Any) -> bool:
    try:
        ipaddress.ip_address(str(a))
    except ValueError:
        return False
    return isinstance(a, str)


# ------------------------------------------------------------------------------------------------
# homelab_ha_runtime (the venv both services run from)

def rules_homelab_ha_runtime(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    reqs = v.get("homelab_ha_runtime_requirements")
    if not _list(reqs):
        out.append(("homelab_ha_runtime_requirements", "must be a list of pinned requirements (name==version)"))
    else:
        out += [(f"homelab_ha_runtime_requirements[{i}]", f"{r!r} is not pinned: write name==version")
                for i, r in enumerate(reqs) if not (isinstance(r, str) and PIN_RE.match(r.strip()))]
    for key in ("homelab_ha_runtime_user", "homelab_ha_runtime_group"):
        if not (isinstance(v.get(key), str) and re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", v[key])):
            out.append((key, f"must be a system account name ([a-z_][a-z0-9_-]*), got {v.get(key)!r}"))
    if not str(v.get("homelab_ha_runtime_dir", "")).startswith("/"):
        out.append(("homelab_ha_runtime_dir", "must be an absolute path"))
    return out


# ------------------------------------------------------------------------------------------------
# ha_bridge

def rules_ha_bridge(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    poll = _int(v.get("ha_bridge_poll_interval_s"))
    if poll is None or poll < 1:
        out.append(("ha_bridge_poll_interval_s", f"must be an integer > 0 (seconds), got "
                                                 f"{v.get('ha_bridge_poll_interval_s')!r}"))
    expire = _int(v.get("ha_bridge_expire_after_s"))
    if expire is None or (poll is not None and poll >= 1 and expire < poll):
        out.append(("ha_bridge_expire_after_s", f"must be an integer >= ha_bridge_poll_interval_s ({poll!r}), "
                                                f"else every sensor goes unavailable between two polls; got "
                                                f"{v.get('ha_bridge_expire_after_s')!r}"))
    if not re.match(r"^https?://[^/\s]+", str(v.get("ha_bridge_netdata_url"))):
        out.append(("ha_bridge_netdata_url", f"must be an http(s) URL, got {v.get('ha_bridge_netdata_url')!r}"))
    out += _mqtt_port(v, "ha_bridge_mqtt_port")
    if not _text(v.get("ha_bridge_mqtt_password")):
        out.append(_password_problem("ha_bridge_mqtt_password", v.get("ha_bridge_mqtt_username")))
    hosts, known = v.get("ha_bridge_hosts"), v.get("ha_bridge_known_hosts")
    if not _list(hosts) or not hosts:
        out.append(("ha_bridge_hosts", "must list at least one host: put hosts in group netdata, or set "
                                       "ha_bridge_hosts [{name, label, unified_memory}]"))
        return out
    seen: dict[str, int] = {}
    for i, h in enumerate(hosts):
        f = f"ha_bridge_hosts[{i}]"
        name = h.get("name") if isinstance(h, Mapping) else None
        if not (isinstance(name, str) and name.strip() and not re.search(r"\s", name)):
            out.append((f"{f}.name", f"is required: the host's Netdata name, without spaces, got {name!r}"))
            continue
        if name in seen:
            out.append((f"{f}.name", f"host {name!r} is also ha_bridge_hosts[{seen[name]}]"))
        seen.setdefault(name, i)
        if _list(known) and known and name not in known:  # no group netdata: nothing to check against
            out.append((f"{f}.name", f"{name!r} is no host of group netdata (their Netdata names: "
                                     f"{', '.join(map(str, known)) or 'none'}), so the Netdata parent has no "
                                     "charts for it"))
    return out


# ------------------------------------------------------------------------------------------------
# vision_notifier

def rules_vision_notifier(v: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    if not re.match(r"^https?://[^/\s]+", str(v.get("vision_notifier_router_url"))):
        out.append(("vision_notifier_router_url", f"must be the router's http(s) base URL ending in /v1, got "
                                                  f"{v.get('vision_notifier_router_url')!r}"))
    if not _text(v.get("vision_notifier_mqtt_password")):
        out.append(_password_problem("vision_notifier_mqtt_password", v.get("vision_notifier_mqtt_username")))
    out += _mqtt_port(v, "vision_notifier_mqtt_port") + _mqtt_port(v, "vision_notifier_listen_port")
    conf = _num(v.get("vision_notifier_drop_confidence"))
    if conf is None or not 0 < conf <= 1:
        out.append(("vision_notifier_drop_confidence", f"must be a number in (0, 1], got "
                                                       f"{v.get('vision_notifier_drop_confidence')!r}"))
    t = _num(v.get("vision_notifier_router_timeout_s"))
    if t is None or t <= 0:
        out.append(("vision_notifier_router_timeout_s", f"must be > 0 seconds, got "
                                                        f"{v.get('vision_notifier_router_timeout_s')!r}"))
    for key in ("vision_notifier_channel_attempts", "vision_notifier_workers"):
        out += _positive_int(v, key)
    for key in ("vision_notifier_dedup_window_s", "vision_notifier_dedup_id_ttl_s"):
        out += _positive_int(v, key, 0)
    host = str(v.get("vision_notifier_listen_host", ""))
    loopback = host in LOOPBACK or (_is_address(host) and ipaddress.ip_address(host).is_loopback)
    if not loopback and not _text(v.get("vision_notifier_ingest_token")):
        out.append(("vision_notifier_ingest_token", f"is required when the snapshot ingest listens on {host!r} "
                                                    "(not loopback): set vault_vision_notifier_ingest_token in the "
                                                    "vault (the value itself is not shown)"))
    models = v.get("vision_notifier_router_models")
    for key in ("vision_notifier_stage1_model", "vision_notifier_stage2_model"):
        name = v.get(key)
        if not _text(name):
            out.append((key, "is required: a route, an alias or homelab/<bucket> of the router"))
        elif _list(models) and name not in models:
            out.append((key, f"{name!r} is not a model the router answers (no route, alias, model id or "
                             f"homelab/<bucket> of that name), so every camera event would fail at this stage"))
    return out


# ------------------------------------------------------------------------------------------------
# what the router answers, from the inventory (both callers use this)

def router_model_names(hostvars: Any, groups: Mapping[str, Any], buckets: Any = None, cloud_routes: Any = None,
                       unknown_ok: Any = None) -> list[str] | None:
    """Filter ``homelab_router_model_names``: every model name the router compiled from this inventory
    answers, or None when that cannot be told (no routes, or router_route_unknown_models: true)."""
    if _bool(unknown_ok) if unknown_ok is not None else False:
        return None
    names: list[str] = []
    for host in list((groups or {}).get("gpu_nodes") or []):
        try:
            engines = hostvars[host].get("engines") if isinstance(hostvars[host], Mapping) else None
        except Exception:  # noqa: BLE001 - an undefined/invalid entry is reported by the engine checks
            engines = None
        for e in engines if _list(engines) else []:
            if isinstance(e, Mapping):
                names += [str(e[k]) for k in ("route", "served_name", "model") if _text(e.get(k))]
                names += [str(a) for a in (e.get("aliases") if _list(e.get("aliases")) else [])]
    for r, c in (cloud_routes.items() if isinstance(cloud_routes, Mapping) else []):
        names.append(str(r))
        if isinstance(c, Mapping):
            names += [str(a) for a in (c.get("aliases") if _list(c.get("aliases")) else [])]
            names += [str(c["model"])] if _text(c.get("model")) else []
    if not names:
        return None
    names += ["homelab/auto"] + [f"homelab/{b}" for b in (buckets if isinstance(buckets, Mapping) else {})]
    return sorted(set(names))


class FilterModule:
    """The rules are reached through homelab_rules.py's homelab_role_errors; this file adds the model names."""

    def filters(self) -> dict[str, Any]:
        return {"homelab_router_model_names": router_model_names}
