"""router_app.mcpbridge.services without a router: hook overrides, allowlist before the agent, router down."""
from __future__ import annotations

import asyncio

import pytest
import yaml

from access_helpers import BASE
from engine import free_port
from router_app.mcpbridge.services import Hooks, ServiceError, Services


def _services(tmp_path, hooks=None, **mcp):
    cfg = dict(BASE)
    cfg.update(store_path=str(tmp_path / "s.sqlite3"), log_dir=str(tmp_path / "logs"),
               mcp={"router_url": f"http://127.0.0.1:{free_port()}", **mcp})   # nothing listens there
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Services(str(path), admin_key="k", hooks=hooks)


def run(coro):
    return asyncio.run(coro)


def test_router_down_is_a_clear_error(tmp_path):
    svc = _services(tmp_path)

    async def go():
        try:
            await svc.route_status()
        finally:
            await svc.close()
    with pytest.raises(ServiceError, match="did not answer GET /admin/upstreams"):
        run(go())


def test_hooks_are_called_once_they_exist(tmp_path):
    calls = []

    async def read(node, path, max_bytes):
        calls.append(("read", node, path, max_bytes))
        return {"node": node, "path": path, "content": "x"}

    async def load(model, node, dry_run):
        calls.append(("load", model, node, dry_run))
        return {"dry_run": dry_run}

    async def recover(node, dry_run):
        calls.append(("recover", node, dry_run))
        return {"dry_run": dry_run}

    route = next(iter(BASE["routes"]))
    host = BASE["routes"][route]["url"].split("//")[1].split(":")[0]
    svc = _services(tmp_path, Hooks(infra_read=read, model_load=load, recover_cuda=recover))
    assert run(svc.infra_read(host, "/etc/a", 10))["content"] == "x"
    with pytest.raises(ServiceError, match="must not contain '..'"):
        run(svc.infra_read(host, "/etc/a/../shadow", 10))         # refused before any agent is asked
    with pytest.raises(ServiceError, match="not normalized"):
        run(svc.infra_list(host, "/etc//a"))
    assert run(svc.model_load("m", None, True)) == {"dry_run": True}
    with pytest.raises(ServiceError, match="did not answer GET /admin/catalog"):
        run(svc.model_load("m", None, True, unload=True))        # no unload hook: the admin API (down here)
    with pytest.raises(ServiceError, match="unknown node 'ghost'"):
        run(svc.model_load("m", "ghost", True))
    assert run(svc.recover_cuda(host, True)) == {"dry_run": True}
    assert calls == [("read", host, "/etc/a", 10), ("load", "m", None, True), ("recover", host, True)]
