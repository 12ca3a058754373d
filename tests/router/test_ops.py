"""The operational surface (FastAPI, router_app/ops/app.py) and the prefix split in front of it."""
import json
import os

from conftest import chat
from router_app.ops import app as ops

OPS_PATHS = {"/healthz": "get", "/metrics": "get", "/stats": "get", "/admin/upstreams": "get",
             "/admin/drain/{route}": "post", "/admin/undrain/{route}": "post", "/admin/reload-config": "post",
             "/admin/keys": "get",
             # issue 14: the model catalog (router_app/catalog/admin.py)
             "/admin/catalog": "get", "/admin/placement/{model}": "get", "/admin/models/load": "post",
             "/admin/models/unload": "post",
             # the hub (router_app/hub/api.py)
             "/admin/nodes": "get", "/admin/commands": "get", "/admin/commands/{cid}": "get",
             "/admin/command-kinds": "get", "/admin/recover-cuda": "post", "/admin/events": "get",
             "/admin/proxmox/guests": "get"}


def test_openapi_describes_the_ops_surface_only(client):
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == set(OPS_PATHS)
    assert {t["name"] for t in doc["tags"]} == {"health", "observability", "admin"}
    for path, method in OPS_PATHS.items():
        op = doc["paths"][path][method]
        assert op["summary"] and op["tags"]
        if path.startswith("/admin/"):
            assert op["tags"] == ["admin"] and {"401", "403"} <= set(op["responses"])
            assert op["security"] == [{"HTTPBearer": []}]
    assert doc["paths"]["/admin/upstreams"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "422" in doc["paths"]["/admin/reload-config"]["post"]["responses"]


def test_answers_fit_their_documented_models(client):
    chat(client, "refactor")
    ops.Health.model_validate(client.get("/healthz").json())
    ops.Stats.model_validate(client.get("/stats").json())
    ops.Upstreams.model_validate(client.get("/admin/upstreams").json())
    ops.KeysReport.model_validate(client.get("/admin/keys").json())
    ops.DrainResult.model_validate(client.post("/admin/drain/mouth").json())
    ops.Reloaded.model_validate(client.post("/admin/reload-config").json())


def test_errors_are_openai_shaped(client):
    for method, path, status, code in (("GET", "/nope", 404, "not_found"),
                                       ("GET", "/healthz/", 404, "not_found"),
                                       ("POST", "/healthz", 405, "method_not_allowed"),
                                       ("GET", "/admin/drain/eyes", 405, "method_not_allowed"),
                                       ("GET", "/admin/whatever", 404, "not_found"),
                                       ("POST", "/admin/drain/gpu9", 404, "unknown_route")):
        r = client.request(method, path)
        assert r.status_code == status, (method, path, r.text)
        assert r.headers["content-type"] == "application/json"
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == code


def test_head_is_served_like_get_without_a_body(client):
    r = client.head("/healthz")
    assert r.status_code == 200 and r.content == b""
    assert client.get("/healthz").json() == {"status": "ok"}      # the connection is still in step


def test_v1_never_goes_through_fastapi(router, client, monkeypatch):
    async def boom(scope, receive, send):
        raise AssertionError(f"{scope['path']} reached the ops app")
    monkeypatch.setattr(router.app, "ops", boom)
    assert chat(client, "refactor").status_code == 200
    assert client.get("/v1/models").status_code == 200
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_lifespan_starts_the_router_once(router, client):
    assert client.get("/healthz").status_code == 200 and chat(client, "refactor").status_code == 200
    assert router.app.started and router.app.health is not None
    router.flush_logs()
    events = [json.loads(x)["event"] for x in open(os.path.join(router.app.logs.dir, "router-events.jsonl"))]
    assert events.count("start") == 1
