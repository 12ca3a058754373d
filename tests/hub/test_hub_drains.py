"""A stale node's routes are drained by the hub, apart from operator drains, and come back with the node's next
heartbeat (router_app/hub/drains.py): the pure decision, its effect on a real RouterApp, and end to end with a real
agent process."""
from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
import yaml

from hub_rig import EXAMPLE
from router_app.hub import drains

T0 = 1_000_000.0


def nodes(**states):
    # name -> (state, last_seen)
    return {n: {"state": s, "last_seen": ls} for n, (s, ls) in states.items()}


ROUTES = {"a": ["eyes", "fast"], "b": ["brain"], "c": ["brain"], "fresh": ["spare"]}


@pytest.mark.parametrize("name,kw,want_drain,want_undrain", [
    ("healthy node: nothing", dict(nodes=nodes(a=("healthy", T0 - 100))), {}, {}),
    ("stale past grace: its routes", dict(nodes=nodes(a=("stale", T0 - 30))), {"eyes": "a", "fast": "a"}, {}),
    ("stale within grace: not yet", dict(nodes=nodes(a=("stale", T0 - 10))), {}, {}),
    ("never reported: never drained", dict(nodes={}), {}, {}),
    ("hub just restarted: agents get one grace to resync",
     dict(nodes=nodes(a=("stale", T0 - 3600)), started_at=T0 - 5), {}, {}),
    ("restarted long enough ago", dict(nodes=nodes(a=("stale", T0 - 3600)), started_at=T0 - 25),
     {"eyes": "a", "fast": "a"}, {}),
    ("two nodes on a route: one beating keeps it", dict(nodes=nodes(b=("stale", T0 - 60), c=("healthy", T0))), {}, {}),
    ("two nodes on a route: both stale", dict(nodes=nodes(b=("stale", T0 - 60), c=("stale", T0 - 60))),
     {"brain": "b"}, {}),
    ("already drained: no change", dict(nodes=nodes(a=("stale", T0 - 30)), current={"eyes": "a", "fast": "a"}), {}, {}),
    ("node back: undrain", dict(nodes=nodes(a=("healthy", T0)), current={"eyes": "a"}), {}, {"eyes": "a"}),
    ("off: every hub drain lifted", dict(nodes=nodes(a=("stale", T0 - 30)), current={"eyes": "a"}, enabled=False),
     {}, {"eyes": "a"}),
    ("route gone from the config", dict(nodes=nodes(a=("stale", T0 - 30)), routes=["fast"], current={"eyes": "a"}),
     {"fast": "a"}, {"eyes": "a"}),
])
def test_plan(name, kw, want_drain, want_undrain):
    args = dict(enabled=True, routes=["eyes", "fast", "brain", "spare"], current={}, started_at=T0 - 3600)
    args.update(kw)
    got = drains.plan(args["enabled"], args["nodes"], lambda n: ROUTES.get(n, []), args["routes"], args["current"],
                      T0, 20.0, args["started_at"])
    assert got == (want_drain, want_undrain), name


def _app(tmp_path, **hub):
    from router_app.decision.config import parse_dict
    from router_app.v1.app import create_app
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(admin_key_env=None, log_dir=str(tmp_path / "logs"), store_path=str(tmp_path / "a.db"))
    raw["hub"] = {"enabled": True, "stale_after_s": 20, **hub,
                  "agents": {"gpu-a": {"token_sha256": hashlib.sha256(b"t").hexdigest(), "routes": ["eyes"]}}}
    cfg, errs = parse_dict(raw)
    assert not errs, errs
    return create_app(config=cfg)


def test_effect_on_the_router_and_the_admin_views(tmp_path):
    app = _app(tmp_path)
    hub = app.hub
    hub.started_at -= 3600

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 1)),
                                     base_url="http://t") as c:
            hub.heartbeat("gpu-a", {"engines": [{"name": "vllm-eyes", "route": "eyes"}]})
            assert "eyes" not in app.runtime.drained
            # silent past the grace: stale, and its route drained by the hub
            hub.sweep(now=hub.registry.nodes["gpu-a"]["last_seen"] + 25)
            assert app.runtime.drained == frozenset({"eyes"})
            ups = (await c.get("/admin/upstreams")).json()["routes"]["eyes"]
            assert ups["drained"] is False and ups["drained_by_hub"] == "gpu-a"
            node = {n["node"]: n for n in (await c.get("/admin/nodes")).json()["nodes"]}["gpu-a"]
            assert node["state"] == "stale" and node["drained_routes"] == ["eyes"]
            assert "homelab_router_route_hub_drained{route=\"eyes\"} 1" in (await c.get("/metrics")).text
            # an operator's undrain does not lift the hub's drain
            r = (await c.post("/admin/undrain/eyes")).json()
            assert r == {"route": "eyes", "drained": False, "drained_by_hub": "gpu-a"}
            assert "eyes" in app.runtime.drained
            # the operator drains too; the node comes back: the hub's drain goes, the operator's stays
            await c.post("/admin/drain/eyes")
            hub.heartbeat("gpu-a", {})
            ups = (await c.get("/admin/upstreams")).json()["routes"]["eyes"]
            assert ups["drained"] is True and ups["drained_by_hub"] is None
            assert "eyes" in app.runtime.drained
            await c.post("/admin/undrain/eyes")
            assert "eyes" not in app.runtime.drained
            kinds = [(e["kind"], e.get("route")) for e in (await c.get("/admin/events")).json()["events"]]
            assert ("hub_drain", "eyes") in kinds and ("hub_undrain", "eyes") in kinds
            und = [e for e in (await c.get("/admin/events", params={"kind": "hub_undrain"})).json()["events"]]
            assert und[-1]["operator_drain_kept"] is True and und[-1]["node"] == "gpu-a"
    asyncio.run(go())
    hub.store.close()


def test_off_by_config(tmp_path):
    app = _app(tmp_path, drain_stale_routes=False)
    app.hub.started_at -= 3600
    app.hub.heartbeat("gpu-a", {})
    app.hub.sweep(now=app.hub.registry.nodes["gpu-a"]["last_seen"] + 25)
    assert app.hub.registry.nodes["gpu-a"]["state"] == "stale" and app.runtime.drained == frozenset()
    app.hub.store.close()


def test_end_to_end_with_a_real_agent(rig):
    rig.start_agent("gpu-a")
    rig.wait(lambda: rig.node("gpu-a")["state"] == "healthy", what="healthy")
    ups = lambda: rig.admin.get("/admin/upstreams").json()["routes"]["eyes"]    # noqa: E731
    assert ups()["drained_by_hub"] is None
    rig.stop_agent("gpu-a")
    rig.wait(lambda: ups()["drained_by_hub"] == "gpu-a", timeout=20, what="hub drain")
    assert rig.node("gpu-a")["drained_routes"] == ["eyes"]
    assert rig.admin.post("/admin/undrain/eyes").json()["drained_by_hub"] == "gpu-a"
    rig.start_agent("gpu-a")
    rig.wait(lambda: ups()["drained_by_hub"] is None, timeout=20, what="hub undrain")
    kinds = [e["kind"] for e in rig.events(route="eyes")]
    assert kinds.index("hub_drain") < kinds.index("hub_undrain")
