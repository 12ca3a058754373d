"""Issue 14 item 3: the node agents' card figures as the catalog's VRAM source (router_app/catalog/vram.py).

The figures have the shape the agent sends (router_app/agent/homelab_agent.py: nvidia-smi `memory.total`,
`memory.used` in MiB per card, None for "[N/A]"). Fresh figures replace the configured capacity and the learned sizes;
stale ones (older than catalog.stale_s) or unusable ones fall back to them. The end-to-end part posts a heartbeat to
the real hub endpoint of a real router and reads the ledger back from /admin/upstreams.
"""
from __future__ import annotations

import hashlib

import httpx
import yaml

from conftest import RouterServer, rig_config
from router_app.catalog.model import HOT, ON_DISK, ModelInfo, NodeView
from router_app.catalog.placement import place, plan_evictions
from router_app.catalog.vram import AGENT, LEARNED, card_figures, ledger

CARDS = [{"index": 0, "name": "RTX 4090", "memory_total_mib": 24564, "memory_used_mib": 20100},
         {"index": 1, "name": "RTX 3090", "memory_total_mib": 24576, "memory_used_mib": 1000}]


def test_card_figures_select_sum_and_refuse_half_pictures():
    assert card_figures(CARDS, [0]) == (20100, 24564)
    assert card_figures(CARDS, [1]) == (1000, 24576)
    assert card_figures(CARDS, None) == (21100, 49140), "no selection: the node's cards together"
    assert card_figures(CARDS, [0, 1]) == (21100, 49140)
    assert card_figures(CARDS, [2]) is None, "a card the agent does not report"
    assert card_figures([], None) is None and card_figures(None, None) is None and card_figures("x", [0]) is None
    na = [{"index": 0, "memory_total_mib": 24564, "memory_used_mib": None}]        # nvidia-smi "[N/A]"
    assert card_figures(na, None) is None
    assert card_figures([{"index": 0, "memory_total_mib": 0, "memory_used_mib": 0}], None) is None
    assert card_figures([{"index": True, "memory_total_mib": 1, "memory_used_mib": 0}], None) is None
    assert card_figures([{"index": 0, "memory_total_mib": 100, "memory_used_mib": -1}], None) is None


def test_ledger_prefers_fresh_agent_figures_and_falls_back():
    now = 1_000_000.0
    assert ledger(8000, 3000, (20100, 24564, now - 2), now, 15) == (24564, 20100, AGENT)
    assert ledger(8000, 3000, (20100, 24564, now - 16), now, 15) == (8000, 3000, LEARNED), "stale: learned"
    assert ledger(8000, 3000, None, now, 15) == (8000, 3000, LEARNED)
    assert ledger(8000, 3000, (20100, 24564, now + 60), now, 15) == (8000, 3000, LEARNED), "a report from the future"
    assert ledger(0, 0, (5, 0, now), now, 15) == (0, 0, LEARNED)


def _node(models, **kw):
    return NodeView("small", residency="on_demand",
                    models={n: ModelInfo(n, s, size) for n, (s, size) in models.items()}, **kw)


def test_measured_use_drives_eviction():
    models = {"a": (HOT, 4000), "b": (HOT, 6000), "c": (ON_DISK, 5000)}
    # learned sizes alone: 10000 of 24000 used, c (5000) fits, nothing to evict
    assert plan_evictions(_node(models, vram_mb=24000), "c", 5000, 0.0) == []
    # the card says 21000 used (KV cache, another process): c needs 5000 -> evict a (cheapest to reload) first
    assert plan_evictions(_node(models, vram_mb=24000, vram_used_mb=21000), "c", 5000, 0.0) == ["a"]
    # 23500 used: a alone frees 4000 -> 4500 free, not enough; b too
    assert plan_evictions(_node(models, vram_mb=24000, vram_used_mb=23500), "c", 5000, 0.0) == ["a", "b"]
    # in flight models are never evicted: no room can be made
    busy = _node(models, vram_mb=24000, vram_used_mb=23500, model_in_flight={"b": 1})
    assert plan_evictions(busy, "c", 5000, 0.0) is None
    p = place("c", [busy], 15, 0.0)
    assert p.choice is None and "no room" in p.rejected[0]["why"], p.to_dict()


def test_hub_heartbeat_feeds_the_ledger(engines, tmp_path):
    token = "tok-gpu-a-" + "z" * 40

    def mutate(cfg):
        cfg["routes"]["mouth"]["catalog"] = {"engine": "openai", "residency": "on_demand", "vram_mb": 8000,
                                             "gpu_cards": [1]}
        cfg["catalog"] = {"refresh_s": 3600, "stale_s": 15}
        cfg["store_path"] = str(tmp_path / "access.db")
        cfg["hub"] = {"enabled": True, "agents": {"gpu-a": {
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(), "routes": ["mouth"]}}}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(rig_config(engines, tmp_path, mutate), sort_keys=False))
    r = RouterServer(str(path))
    try:
        c = httpx.Client(base_url=r.url, timeout=10)

        def vram():
            async def feed():
                r.app.catalog.agent_vram()
            r.call(feed())
            return c.get("/admin/upstreams").json()["routes"]["mouth"]["engine"]["vram"]
        assert vram() == {"source": "learned", "total_mb": 8000, "used_mb": 0}, "no heartbeat yet: configured size"
        hb = c.post("/hub/agent/heartbeat", json={"node": "gpu-a", "gpus": CARDS},
                    headers={"Authorization": f"Bearer {token}"})
        assert hb.status_code == 200, hb.text
        assert vram() == {"source": "agent", "total_mb": 24576, "used_mb": 1000}, "card 1 of the heartbeat"
        # the agent goes quiet: past catalog.stale_s the ledger is the learned one again
        r.app.hub.registry.nodes["gpu-a"]["last_seen"] -= 60
        assert vram() == {"source": "learned", "total_mb": 8000, "used_mb": 0}
    finally:
        r.stop()
