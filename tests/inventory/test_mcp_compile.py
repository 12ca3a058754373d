"""The MCP bridge's node map compiled from the example inventory (router role filter `router_mcp_nodes`)."""
from __future__ import annotations

import importlib.util
import pathlib

import yaml

from router_app.mcpbridge.services import Services
from test_router_compile import _compile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _filters():
    spec = importlib.util.spec_from_file_location(
        "router_inventory", ROOT / "roles" / "router" / "filter_plugins" / "router_inventory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_nodes_reach_the_bridge(model, tmp_path):
    gpu = model["groups"]["gpu_nodes"]
    nodes = _filters().router_mcp_nodes(model["hostvars"], gpu)
    assert list(nodes) == list(gpu)
    assert nodes["spark"]["engines"][0] == {"route": "brain", "runtime": "vllm", "port": 8000}
    cfg = _compile(model)
    cfg.update(store_path=str(tmp_path / "s.sqlite3"), log_dir=str(tmp_path / "logs"),
               mcp={"nodes": nodes})
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    svc = Services(str(path), admin_key=None)
    derived = svc._derived_nodes()
    assert set(derived) == set(gpu)          # every route's URL is owned by its inventory node: no stray hosts
    routes = {e["route"]: (n, e["runtime"]) for n, d in derived.items() for e in d["engines"]}
    assert routes["mouth"] == ("win-5090", "lmstudio") and routes["brain"] == ("spark", "vllm")
    assert derived["spark"]["engines"][0]["url"] == cfg["routes"]["brain"]["url"]
