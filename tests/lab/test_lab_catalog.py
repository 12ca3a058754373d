"""Issue 14 on the lab: THE HANDS (ubuntu-6000) runs the real llama-server in router mode (inventory/lab:
args.models_max 2, three tiny models, --no-models-autoload), catalogued on demand by the homelab router.

Checked end to end through Caddy's TLS with the official openai client: /v1/models lists the engine's models from
the registry; a model on disk is loaded on demand; keyword-routed traffic (homelab/auto) loads the route's own model;
with two resident the third evicts the longest idle one; N concurrent requests for a cold model cause one load;
a name installed nowhere is a 404 model_not_found; with the engine stopped an installed model is a 503 with
Retry-After and x-should-retry: false; a stream that waits for a load gets the loading notice first.

The router's own view is read from its admin API on the gateway's loopback (/admin/catalog, /admin/upstreams,
/admin/events: every catalog event lands in the hub's events), and, where llama-server answers without a key, the
engine's own /models from inside its container. Every test starts from a known state (the three models unloaded
through the admin API) and leaves the engine running.
"""
from __future__ import annotations

import asyncio
import json

import pytest

import homelab_labctl as labmod  # tests/lab/lab.py, loaded by conftest.py
from test_lab_control_plane import _mcp, admin, trust  # the admin API on the gateway's loopback; MCP
from test_lab_e2e import CODING, ROUTE_HEADER, chat, engine_container, stopped_engine, wait_until

podman_exec = labmod.podman_exec

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.xdist_group("lab"), pytest.mark.timeout(1800)]

ROUTE = "hands"
OWN = "glm-4.5-air-awq"                 # the route's own model (served_name; <served_name>.gguf in router mode)
MODELS = (OWN, "tiny-beta", "tiny-gamma")
MAX_RESIDENT = 2
RESIDENT = ("hot", "loading")
REASON = "x-homelab-reason"


# ------------------------------------------------------------------------------------------------ helpers
def router_states(lab) -> dict:
    """model -> state on hands, as the router's registry has it."""
    code, body = admin(lab, "GET", "/admin/catalog")
    assert code == 200, f"/admin/catalog answered {code}: {body}"
    route = body.get("routes", {}).get(ROUTE)
    assert route is not None, f"the router does not catalogue {ROUTE}: {json.dumps(body)[:1500]}"
    return dict(route["models"])


def engine_states(lab) -> dict | None:
    """model -> loaded/unloaded/... from llama-server's own GET /models inside its container; None when it does not
    answer without a key (the router's view is then the only one checked)."""
    inv = lab["lab"]
    host = next(h for h in inv.hosts for e in inv.hostvars[h].get("engines") or [] if e["route"] == ROUTE)
    eng = next(e for e in inv.hostvars[host]["engines"] if e["route"] == ROUTE)
    url = f"http://{inv.hostvars[host]['homelab_address']}:{eng['port']}/models"
    out = podman_exec(engine_container(lab, ROUTE), "curl", "-sS", "-f", "--max-time", "10", url, check=False)
    if out.returncode != 0:
        return None
    try:
        return {m["id"]: m["status"]["value"] for m in json.loads(out.stdout)["data"]}
    except (ValueError, KeyError, TypeError):
        return None


def resident(states: dict) -> set:
    return {m for m, s in states.items() if s in RESIDENT}


def last_event_id(lab) -> int:
    code, body = admin(lab, "GET", "/admin/events?limit=1")
    assert code == 200, body
    return body["events"][-1]["id"] if body.get("events") else 0


def events_since(lab, since: int, kind: str) -> list:
    code, body = admin(lab, "GET", f"/admin/events?since={since}&kind={kind}&route={ROUTE}&limit=1000")
    assert code == 200, body
    return body["events"]


def cold(lab) -> None:
    """Every hands model unloaded (through the router, so its registry knows), waiting out requests in flight."""
    for model in MODELS:
        def unloaded(model=model) -> bool:
            code, body = admin(lab, "POST", "/admin/models/unload", {"model": model})
            assert code in (200, 409), f"unload {model}: {code} {body}"
            return code == 200
        wait_until(unloaded, timeout=120, interval=1, what=f"{model} unloaded (no request in flight)")
    states = router_states(lab)
    assert not resident(states), f"still resident after unloading everything: {states}"
    eng = engine_states(lab)
    if eng is not None:
        assert not resident({m: ("hot" if s == "loaded" else s) for m, s in eng.items()}), \
            f"the engine still has models loaded: {eng}"


@pytest.fixture(scope="module")
def catalogued(lab):
    """The precondition: the lab runs hands in router mode (a lab brought up from an older branch does not)."""
    states = wait_until(lambda: (lambda s: s if set(MODELS) <= set(s) else None)(router_states(lab)),
                        timeout=60, what="the router's catalog listing the three hands models")
    code, up = admin(lab, "GET", "/admin/upstreams")
    eng = up["routes"][ROUTE].get("engine") or {}
    assert eng.get("engine") == "llamacpp_router" and eng.get("residency") == "on_demand", \
        f"{ROUTE} is not catalogued as llama-server router mode (re-run `make lab` with this inventory): {eng}"
    return states


def _chat_raw(http, lab, model: str, prompt: str = "hello there", **kw):
    return http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {lab['key']}"}, timeout=180,
                     json={"model": model, "max_tokens": 4, "temperature": 0,
                           "messages": [{"role": "user", "content": prompt}], **kw})


# ------------------------------------------------------------------------------------------------ tests
def test_v1_models_lists_the_engines_models(lab, client, catalogued):
    ids = {m.id: m for m in client.models.list().data}
    for name in (*MODELS, "homelab/auto", "homelab/code"):
        assert name in ids, f"/v1/models lacks {name}: {sorted(ids)}"
    for name in MODELS:
        extra = ids[name].model_extra or {}
        states = (extra.get("homelab") or {}).get("states") or {}
        assert ROUTE in states, f"{name}: /v1/models should say where it is and in what state: {extra}"


def test_load_on_demand_then_hot(lab, http, catalogued):
    cold(lab)
    r = _chat_raw(http, lab, "tiny-beta")
    assert r.status_code == 200, f"a model on disk must be loaded, then answered: {r.status_code} {r.text}"
    assert r.headers[ROUTE_HEADER] == ROUTE and r.headers[REASON] == "catalog_load", dict(r.headers)
    assert router_states(lab)["tiny-beta"] == "hot"
    eng = engine_states(lab)
    assert eng is None or eng["tiny-beta"] == "loaded", eng
    r = _chat_raw(http, lab, "tiny-beta")
    assert r.status_code == 200 and r.headers[REASON] == "catalog_hot", (r.status_code, dict(r.headers))


def test_keyword_traffic_loads_the_routes_own_model(lab, client, catalogued):
    """The blocker: homelab/auto coding traffic goes to hands, whose own model nobody loaded (no autoload)."""
    cold(lab)
    since = last_event_id(lab)
    headers, completion = chat(client, CODING)
    assert headers[ROUTE_HEADER] == ROUTE, f"coding traffic should stay on {ROUTE} after a load: {dict(headers)}"
    assert completion.choices[0].message.content is not None
    assert router_states(lab)[OWN] == "hot"
    loads = [e for e in events_since(lab, since, "model_load") if e.get("model") == OWN]
    assert len(loads) == 1 and loads[0].get("ok") is True, f"one load of {OWN} expected: {loads}"


def test_eviction_keeps_at_most_two_resident(lab, http, client, catalogued):
    cold(lab)
    since = last_event_id(lab)
    for model in ("tiny-beta", "tiny-gamma"):
        r = _chat_raw(http, lab, model)
        assert r.status_code == 200, f"{model}: {r.status_code} {r.text}"
    assert resident(router_states(lab)) == {"tiny-beta", "tiny-gamma"}
    # the third (the route's own, by keyword): beta is the longest idle of two same-size models -> evicted
    headers, _ = chat(client, CODING)
    assert headers[ROUTE_HEADER] == ROUTE, dict(headers)
    states = router_states(lab)
    assert resident(states) == {OWN, "tiny-gamma"}, f"beta (longest idle) should have made room: {states}"
    eng = engine_states(lab)
    if eng is not None:
        loaded = {m for m, s in eng.items() if s in ("loaded", "loading")}
        assert loaded == {OWN, "tiny-gamma"} and len(loaded) <= MAX_RESIDENT, eng
    unloads = [(e.get("model"), e.get("why")) for e in events_since(lab, since, "model_unload")]
    assert ("tiny-beta", "evict") in unloads, f"no eviction event for tiny-beta: {unloads}"
    assert all(m != "tiny-gamma" for m, _ in unloads), f"gamma (more recent) must stay: {unloads}"


def test_single_flight_one_load_for_concurrent_requests(lab, catalogued):
    """hands has eight slots and no queue: eight concurrent requests for the cold model all wait for one load."""
    import httpx
    cold(lab)
    since = last_event_id(lab)
    code, before = admin(lab, "GET", "/admin/catalog")
    n = 8

    async def burst():
        async with httpx.AsyncClient(base_url=lab["lab"].endpoint.rsplit("/v1", 1)[0], verify=trust(lab),
                                     timeout=180, headers={"Authorization": f"Bearer {lab['key']}"}) as ac:
            return await asyncio.gather(*(ac.post("/v1/chat/completions", json={
                "model": "tiny-gamma", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
                for _ in range(n)))
    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * n, {a.status_code: a.text[:300] for a in answers}
    code, after = admin(lab, "GET", "/admin/catalog")
    assert after["loads_started"] - before["loads_started"] == 1, (before["loads_started"], after["loads_started"])
    loads = [e for e in events_since(lab, since, "model_load") if e.get("model") == "tiny-gamma"]
    assert len(loads) == 1 and loads[0].get("ok") is True, f"exactly one load of tiny-gamma expected: {loads}"


def test_stream_waiting_for_a_load_gets_the_notice_first(lab, http, client, catalogued):
    cold(lab)
    with http.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {lab['key']}"},
                     timeout=180, json={"model": "tiny-beta", "max_tokens": 4, "stream": True,
                                        "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200, r.read()
        raw = b"".join(r.iter_bytes())      # decoded: Caddy may compress
    assert raw.startswith(b": loading tiny-beta on hands\n\n"), raw[:300]
    assert b"data: [DONE]" in raw, raw[-300:]
    # the official SDK reads such a stream as an ordinary one
    cold(lab)
    chunks = list(client.chat.completions.create(model="tiny-beta", max_tokens=4, stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert chunks and all(c.object == "chat.completion.chunk" for c in chunks), chunks


def test_unknown_model_is_404(client, catalogued):
    import openai
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="tiny-not-installed-anywhere", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])
    body = err.value.response.json()
    assert body["error"]["code"] == "model_not_found", body


def test_node_down_is_503_do_not_retry(lab, http, client, catalogued):
    cold(lab)
    with stopped_engine(lab, client, ROUTE):
        def down() -> bool:
            try:
                chat(client, CODING)      # fails over to brain; a probe marks hands down within its interval
            except Exception:  # noqa: BLE001 - an error answer is fine here, the router's state is what counts
                pass
            return admin(lab, "GET", "/admin/upstreams")[1]["routes"][ROUTE]["healthy"] is False
        wait_until(down, timeout=90, interval=2, what=f"the router marks {ROUTE} down")
        r = _chat_raw(http, lab, "tiny-beta")
        assert r.status_code == 503, f"an installed model with no live node: {r.status_code} {r.text}"
        assert r.json()["error"]["code"] == "model_unavailable", r.text
        assert int(r.headers["retry-after"]) >= 1, dict(r.headers)
        assert r.headers["x-should-retry"] == "false", dict(r.headers)
    # stopped_engine's exit waited for hands to answer coding traffic again (which loaded its own model)
    assert router_states(lab)[OWN] == "hot"


# ------------------------------------------------------------------------------------------------ MCP (issue 15)
def test_mcp_loads_and_unloads_a_model_on_the_router_mode_node(lab, catalogued):
    """Issue 15 in the lab: an MCP client (the official SDK, through Caddy's TLS at /mcp) with an admin-scoped key
    loads a model on the router-mode node, sees it hot in model_list, and unloads it; a dry run loads nothing."""
    cli, cfg = labmod.router_cli(lab["lab"]), labmod.router_config_path(lab["lab"])
    key = labmod.create_key(lab["lab"], "lab-mcp-catalog")
    labmod.run([*cli, "keys", "scopes", "--config", cfg, "lab-mcp-catalog", "--set", "admin"])
    cold(lab)

    async def calls(s):
        return [await s.call_tool("model_load", {"model": "tiny-beta", "node": "ubuntu-6000", "dry_run": True}),
                await s.call_tool("model_load", {"model": "tiny-beta", "node": "ubuntu-6000"}),
                await s.call_tool("model_list", {}),
                await s.call_tool("model_unload", {"model": "tiny-beta"})]
    dry, load, listing, unload = _mcp(lab, key, calls)
    for name, res in (("dry run", dry), ("load", load), ("model_list", listing), ("unload", unload)):
        assert not res.is_error, f"{name}: {res.content[0].text}"
    assert json.loads(dry.content[0].text)["dry_run"] is True
    loaded = json.loads(load.content[0].text)
    assert loaded["route"] == ROUTE and loaded["state"] == "hot", loaded
    states = {m["id"]: m for m in json.loads(listing.content[0].text)["models"]}
    assert states["tiny-beta"]["states"].get(ROUTE) == "hot", states.get("tiny-beta")
    assert json.loads(unload.content[0].text)["unloaded_from"] == [ROUTE]
    assert router_states(lab)["tiny-beta"] not in RESIDENT, router_states(lab)
