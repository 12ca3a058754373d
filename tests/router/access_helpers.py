"""Shared helpers for the access-control tests."""
from __future__ import annotations

import json

import yaml

BASE = {
    "routes": {
        "eyes": {"url": "http://127.0.0.1:9/v1", "model": "vl-7b", "vision": True,
                 "aliases": ["homelab/vision"], "failover": "brain"},
        "mouth": {"url": "http://127.0.0.1:9/v1", "model": "chat-14b", "aliases": ["homelab/chat"],
                  "failover": "brain"},
        "brain": {"url": "http://127.0.0.1:9/v1", "model": "big", "vision": True, "terminal": True},
    },
    "buckets": {"vision": {"route": "eyes", "keywords": ["image"]},
                "general_chat": {"route": "mouth", "keywords": ["hello"]},
                "unknown": {"route": "brain"}},
    "size_promotions": {"general_chat": [{"over_tokens": 100, "route": "brain"}]},
}


def make_cfg(tmp_path, **extra):
    data = json.loads(json.dumps(BASE))
    data.update(extra)
    data.setdefault("store_path", str(tmp_path / "router.sqlite3"))
    data.setdefault("log_dir", str(tmp_path / "logs"))
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(data))
    from router_app.decision.config import load_config
    return load_config(str(path))
