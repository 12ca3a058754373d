"""Issue 14: unknown model names are a 404 by default; an operator may opt a key (its app) into keyword routing of
unknown names (catalog.route_unknown_models_apps), without changing anyone else's answer."""
from __future__ import annotations

import httpx

from test_access_http import bearer, eng, rig, wait_enforced  # noqa: F401 (fixtures)


def test_unknown_names_404_unless_the_key_opted_in(rig):
    r = rig(catalog={"route_unknown_models_apps": ["legacy"]})
    _, legacy = r.store.create_key("legacy", rpm=1000)
    _, strict = r.store.create_key("strict", rpm=1000)
    wait_enforced(r.url)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
    a = httpx.post(r.url + "/v1/chat/completions", json=body, headers=bearer(strict), timeout=10)
    assert a.status_code == 404 and a.json()["error"]["code"] == "model_not_found"
    b = httpx.post(r.url + "/v1/chat/completions", json=body, headers=bearer(legacy), timeout=10)
    assert b.status_code == 200, b.text
    assert b.headers["x-homelab-reason"] in ("bucket_match", "no_match")
    # homelab/* names are unaffected
    c = httpx.post(r.url + "/v1/chat/completions", json={**body, "model": "homelab/auto"}, headers=bearer(strict),
                   timeout=10)
    assert c.status_code == 200
