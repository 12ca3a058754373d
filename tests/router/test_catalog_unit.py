"""Issue 14, the pure parts: adapters' parsers on the documented shapes, placement, eviction order, single flight."""
from __future__ import annotations

import asyncio

import pytest

from router_app.catalog.adapters import (parse_llamacpp_models, parse_lmstudio, parse_ollama, parse_openai_models,
                                         parse_vllm_metrics)
from router_app.catalog.loader import SingleFlight
from router_app.catalog.model import FAILED, HOT, LOADING, ON_DISK, SLEEPING, EngineLoad, ModelInfo, NodeView
from router_app.catalog.placement import format_placement, idle_evictions, place, plan_evictions
from router_app.decision.config import validate_dict

MB = 1024 * 1024


def test_parsers_read_the_documented_shapes():
    assert parse_openai_models({"data": [{"id": "a"}, {"x": 1}]})["a"].state == HOT
    m = parse_ollama({"models": [{"name": "q:8b", "size": 5000 * MB}, {"name": "p:3b", "size": 2000 * MB}]},
                     {"models": [{"name": "p:3b", "size": 2100 * MB, "size_vram": 2048 * MB}]})
    assert (m["q:8b"].state, m["q:8b"].size_mb, m["p:3b"].state, m["p:3b"].size_mb) == (ON_DISK, 5000, HOT, 2048)
    lm = parse_lmstudio({"models": [{"key": "a", "size_bytes": 3 * 1024 * MB, "loaded_instances": [{"id": "a:2"}]},
                                    {"key": "b", "loaded_instances": []}]})
    assert (lm["a"].state, lm["a"].instance, lm["a"].size_mb, lm["b"].state) == (HOT, "a:2", 3072, ON_DISK)
    ll = parse_llamacpp_models({"data": [{"id": "x", "status": {"value": "loaded"}},
                                         {"id": "y", "status": {"value": "unloaded", "failed": True, "exit_code": 1}},
                                         {"id": "z", "status": {"value": "sleeping"}},
                                         {"id": "w", "status": {"value": "loading"}}]})
    assert [ll[k].state for k in "xyzw"] == [HOT, FAILED, SLEEPING, LOADING]
    e = parse_vllm_metrics('# HELP x\nvllm:num_requests_waiting{model_name="m"} 6.0\n'
                           'vllm:num_requests_running{model_name="m"} 2.0\nvllm:gpu_cache_usage_perc{a="b"} 0.5\n')
    assert (e.waiting, e.running, e.kv_usage) == (6, 2, 0.5)


def _node(route, models, **kw):
    return NodeView(route, residency=kw.pop("residency", "on_demand"),
                    models={n: ModelInfo(n, s, size) for n, (s, size) in models.items()}, **kw)


def test_placement_prefers_hot_then_least_loaded_and_explains_rejections():
    a = _node("a", {"m": (ON_DISK, 100)}, capacity=4)
    b = _node("b", {"m": (HOT, 100)}, capacity=4, in_flight=3)
    c = _node("c", {"m": (HOT, 100)}, capacity=4, in_flight=1)
    d = _node("d", {"m": (HOT, 100)}, healthy=False)
    e = _node("e", {"other": (HOT, 1)})
    p = place("m", [a, b, c, d, e], stale_s=5, now=0.0)
    assert p.choice == "c" and [x["route"] for x in p.candidates] == ["c", "b", "a"]
    assert {r["route"]: r["why"] for r in p.rejected} == {"d": "down", "e": "not installed"}
    assert "rejected  d: down" in format_placement(p)
    # fresh engine figures outrank the router's own count; stale ones do not
    c.engine = EngineLoad(waiting=9, running=4, at=0.0)
    assert place("m", [b, c], stale_s=5, now=1.0).choice == "b"
    assert place("m", [b, c], stale_s=5, now=10.0).choice == "c"
    # pinned engines are never loaded by the router
    pin = _node("p", {"m": (ON_DISK, 1)}, residency="pinned")
    assert place("m", [pin], 5, 0.0).choice is None


def test_a_drain_stops_placement_but_not_a_route_already_chosen():
    drained = _node("hands", {"m": (ON_DISK, 100)}, drained=True)
    p = place("m", [drained], 5, 0.0)
    assert p.choice is None and p.rejected == [{"route": "hands", "why": "drained"}]
    # a pin to the drained route (forward() lets pins through a drain): its model is still loaded there
    assert place("m", [drained], 5, 0.0, ignore_drain=True).choice == "hands"


def test_big_model_goes_to_the_node_with_room():
    small = _node("small", {"big": (ON_DISK, 40000)}, vram_mb=24000)
    large = _node("large", {"big": (ON_DISK, 40000), "x": (HOT, 30000)}, vram_mb=80000)
    p = place("big", [small, large], 5, 0.0, full=True)   # full: every candidate planned, as explain shows
    assert p.choice == "large" and p.evict == [] and p.rejected[0]["route"] == "small"


def test_eviction_is_deterministic_and_spares_requests_in_flight():
    n = _node("n", {"a": (HOT, 500), "b": (HOT, 200), "c": (HOT, 200), "new": (ON_DISK, 100)}, max_resident=3,
              last_used={"a": 1.0, "b": 5.0, "c": 2.0})
    assert plan_evictions(n, "new", 100, 10.0) == ["c"]          # cheapest to reload, then longest idle
    n.model_in_flight = {"c": 1}
    assert plan_evictions(n, "new", 100, 10.0) == ["b"]
    n.model_in_flight = {"a": 1, "b": 1, "c": 1}
    assert plan_evictions(n, "new", 100, 10.0) is None
    assert place("new", [n], 5, 10.0).rejected[0]["why"].startswith("no room")
    n.model_in_flight = {}
    assert idle_evictions(n, 6.0, 10.0) == ["a", "c"] and idle_evictions(n, 0, 10.0) == []


def test_single_flight_runs_once_for_many_waiters():
    sf = SingleFlight()
    runs = []

    async def load():
        runs.append(1)
        await asyncio.sleep(0.05)
        return "ok"

    async def main():
        return await asyncio.gather(*(sf.run(("r", "m"), load, 5) for _ in range(100)))
    assert asyncio.run(main()) == ["ok"] * 100 and len(runs) == 1 and sf.started == 1

    async def slow():
        await asyncio.sleep(1)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(sf.run("k", slow, 0.05))


def test_config_refuses_bad_catalog_blocks():
    base = {"routes": {"r": {"url": "http://127.0.0.1:1/v1", "model": "m", "terminal": True,
                             "catalog": {"engine": "tgi"}}}, "buckets": {"unknown": {"route": "r"}}}
    errs = validate_dict(base)
    assert any("catalog" in e.path and "engine" in e.path for e in errs), errs
    base["routes"]["r"]["catalog"] = {"engine": "ollama", "residency": "on_demand", "max_resident": 2}
    assert validate_dict(base) == []
