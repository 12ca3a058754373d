"""The closed list of commands: each kind, where it runs, and its typed arguments.

Anything not listed, an unknown argument, a missing one or one of the wrong type or shape is refused with a
CommandRefused naming the field and the reason. The agent keeps its own copy of the node-side list
(router_app/agent/homelab_agent.py) and maps each kind to a runbook (playbooks/runbooks/<kind>.yml), except the two
read-only file kinds, which router_app/agent/files.py answers in-process (the same path rules on both sides); no
command carries a shell string, and no argument reaches a shell.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..agent import files as agent_files

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
ROUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


@dataclass(frozen=True)
class Arg:
    type: type
    required: bool = True
    pattern: Any = None          # a regex, or a callable returning why the value is refused (None: fine)
    help: str = ""
    lo: int = 0                  # bounds of an int argument
    hi: int = 0


@dataclass(frozen=True)
class Kind:
    target: str          # "node": sent to the node's agent; "hub": run by the router itself
    args: dict
    help: str


KINDS: dict[str, Kind] = {
    "restart_engine": Kind("node", {"engine": Arg(str, True, NAME, "engine name (its systemd unit)")},
                           "Restart one engine on the node (runbook restart_engine.yml)."),
    "recover_cuda": Kind("node", {}, "Stop the node's engines, reload nvidia_uvm, start them (runbook "
                                     "recover_cuda.yml, the watchdog's recover-cuda)."),
    "converge_node": Kind("node", {"check": Arg(bool, False, None, "check mode, change nothing")},
                          "Re-apply the node's agent-side state (runbook converge_node.yml)."),
    "drain_route": Kind("hub", {"route": Arg(str, True, ROUTE, "route name")},
                        "Stop auto-routing to a route (pins still reach it)."),
    "undrain_route": Kind("hub", {"route": Arg(str, True, ROUTE, "route name")}, "Undrain a route."),
    "reload_policy": Kind("hub", {}, "Re-read and validate the router config, swap it in."),
    "list_files": Kind("node", {"path": Arg(str, True, agent_files.path_problem,
                                            "absolute path inside the node's allowlist (homelab_agent_infra_paths)")},
                       "List an allowlisted file or directory of the node (read-only; router_app/agent/files.py)."),
    "read_file": Kind("node", {"path": Arg(str, True, agent_files.path_problem,
                                           "absolute path of a file inside the node's allowlist"),
                               "max_bytes": Arg(int, False, None, "bytes to return at most (default 65536)", 1,
                                                agent_files.MAX_READ)},
                      "Read an allowlisted file of the node (read-only; content as UTF-8 or base64, size, mtime, "
                      "truncated)."),
}
FILE_KINDS = ("list_files", "read_file")


class CommandRefused(ValueError):
    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param, self.message = param, message


def validate(kind: Any, args: Any) -> dict:
    """Returns the cleaned arguments, or raises CommandRefused."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise CommandRefused("kind", f"unknown command {kind!r}; commands: {', '.join(KINDS)}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise CommandRefused("args", "args must be an object")
    spec = KINDS[kind]
    out = {}
    for name in args:
        if name not in spec.args:
            allowed = ", ".join(spec.args) or "none"
            raise CommandRefused(f"args.{name}", f"{kind} takes no argument {name!r} (arguments: {allowed})")
    for name, a in spec.args.items():
        if name not in args:
            if a.required:
                raise CommandRefused(f"args.{name}", f"{kind} needs args.{name} ({a.help})")
            continue
        v = args[name]
        if (a.type is bool and not isinstance(v, bool) or a.type is str and not isinstance(v, str)
                or a.type is int and (isinstance(v, bool) or not isinstance(v, int))):
            raise CommandRefused(f"args.{name}", f"args.{name} must be a{'n' if a.type is int else ''} "
                                                 f"{a.type.__name__}")
        if a.type is int and not a.lo <= v <= a.hi:
            raise CommandRefused(f"args.{name}", f"args.{name} must be in [{a.lo}, {a.hi}], got {v}")
        if callable(a.pattern):
            why = a.pattern(v)
            if why:
                raise CommandRefused(f"args.{name}", f"args.{name}: {why}")
        elif a.pattern is not None and not a.pattern.match(v):
            raise CommandRefused(f"args.{name}", f"args.{name} {v!r} is not a valid name")
        out[name] = v
    return out


def catalogue() -> list:
    return [{"kind": k, "target": s.target, "help": s.help,
             "args": {n: {"type": a.type.__name__, "required": a.required, "help": a.help} for n, a in s.args.items()}}
            for k, s in KINDS.items()]
