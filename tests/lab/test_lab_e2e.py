"""End to end on the lab: openai client -> Caddy (TLS, internal CA) -> homelab-router -> llama-server.

The lab is the example site (inventory/example + the overlay inventory/lab), brought up by the `lab` fixture
(or reused when `make lab` left it up). Routes and policy are the example's: eyes = vision/fast (ubuntu-4090),
hands = code (ubuntu-6000), mouth = chat, three slots (win-5090's Linux stand-in), brain = terminal, sees images
(spark). Every disruptive test puts the lab back the way it found it.
"""
from __future__ import annotations

import base64
import json
import ssl
import time

import pytest

import homelab_labctl as labmod  # tests/lab/lab.py, loaded by conftest.py

podman_exec = labmod.podman_exec

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.xdist_group("lab"), pytest.mark.timeout(3600)]

ROUTE_HEADER = "x-homelab-route"

CODING = "Refactor this Python function and add a pytest for it: def f(x): return x*2"
CHAT = "Tell me about your favourite colour, what is your opinion?"
FAST = "Classify these tags as json labels: red, blue"
REASONING = "Review the architecture trade-off and the risk in this plan."


def _png(width: int = 32, height: int = 24) -> bytes:
    """A small RGB gradient PNG built with zlib (no imaging library), valid CRCs."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 7 % 256, y * 11 % 256, (x + y) * 5 % 256)) for x in range(width))
        for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG_SMALL = base64.b64encode(_png()).decode()


def chat(client, prompt, *, model="homelab/auto", max_tokens=8, **kw):
    """One chat completion through the lab; returns (headers, completion)."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=max_tokens, temperature=0,
        messages=[{"role": "user", "content": prompt}], **kw)
    return raw.headers, raw.parse()


def route_of(headers) -> str:
    assert ROUTE_HEADER in headers, f"no {ROUTE_HEADER} header in {dict(headers)}"
    return headers[ROUTE_HEADER]


def engine_container(lab, route: str) -> str:
    """The container whose inventory host serves `route`."""
    inv = lab["lab"]
    for host in inv.hosts:
        for engine in inv.hostvars[host].get("engines") or []:
            if engine["route"] == route:
                return inv.container(host)
    raise AssertionError(f"no lab host serves route {route}")


def engine_unit(lab, route: str) -> str:
    return lab["lab"].vars.get("lab_engine_unit", "llama-server-{route}.service").format(route=route)


def wait_until(predicate, timeout=60.0, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class stopped_engine:
    """Stop a route's engine (systemctl stop inside its container), start it again on exit,
    and wait until the router sees it healthy again.

    The node's gpu_watchdog timer (roles/gpu_watchdog: a dead engine is restarted within its 1 min interval) is
    held meanwhile: otherwise it may bring the engine back before the router's probe has seen it down, and a test
    waiting for "down" waits forever (CI found this under load)."""

    def __init__(self, lab, client, route: str):
        self.lab, self.client, self.route = lab, client, route
        self.container = engine_container(lab, route)
        self.unit = engine_unit(lab, route)

    def __enter__(self):
        podman_exec(self.container, "systemctl", "stop", "gpu-watchdog.timer", check=False)
        podman_exec(self.container, "systemctl", "stop", self.unit)
        return self

    def __exit__(self, *exc):
        podman_exec(self.container, "systemctl", "start", self.unit)
        podman_exec(self.container, "systemctl", "start", "gpu-watchdog.timer", check=False)
        port = next(e["port"] for e in self.lab["lab"].hostvars[_host_of(self.lab, self.route)]["engines"]
                    if e["route"] == self.route)
        wait_until(lambda: podman_exec(self.container, "curl", "-fsS", "-o", "/dev/null",
                                       f"http://{_addr_of(self.lab, self.route)}:{port}/health",
                                       check=False).returncode == 0,
                   timeout=60, what=f"{self.route} engine healthy")
        # The router's health checker marks it up again within one interval.
        wait_until(lambda: _route_ok(self.client, self.route), timeout=60,
                   what=f"router sending to {self.route} again")
        return False


def _host_of(lab, route):
    inv = lab["lab"]
    return next(h for h in inv.hosts for e in inv.hostvars[h].get("engines") or [] if e["route"] == route)


def _addr_of(lab, route):
    return lab["lab"].hostvars[_host_of(lab, route)]["homelab_address"]


def _route_ok(client, route) -> bool:
    try:
        headers, _ = chat(client, {"hands": CODING, "mouth": CHAT, "brain": REASONING, "eyes": FAST}[route])
        return headers.get(ROUTE_HEADER) == route
    except Exception:  # noqa: BLE001 - still coming back
        return False


# ------------------------------------------------------------------------------------------------


def test_rerun_reports_no_changes(lab):
    """`make lab` again on a running lab: fast, and Ansible reports changed=0."""
    t = time.monotonic()
    proc = labmod.subprocess.run(
        [labmod.sys.executable, str(labmod.REPO / "tests" / "lab" / "lab.py"), "up", "--quiet"],
        cwd=labmod.REPO, text=True, stdout=labmod.subprocess.PIPE, stderr=labmod.subprocess.STDOUT,
        timeout=1800)
    took = time.monotonic() - t
    assert proc.returncode == 0, proc.stdout[-4000:]
    last = json.loads((labmod.STATE / "last-up.json").read_text())
    assert last["changed"] == 0, f"rerun changed something: {last['recap']}\n{proc.stdout[-4000:]}"
    for phase in ("image", "network", "ssh", "hosts", "models", "secrets", "services", "engine", "converge",
                  "access"):
        assert f"[lab] {phase}" in proc.stdout, f"no summary line for phase {phase}"
    print(f"warm `lab.py up`: {took:.1f}s")


def test_models_lists_every_engine_and_alias(lab, client):
    ids = {m.id for m in client.models.list().data}
    inv = lab["lab"]
    engines = [e for h in inv.hosts for e in inv.hostvars[h].get("engines") or []]
    assert "homelab/auto" in ids
    for e in engines:
        assert e["served_name"] in ids, (e["served_name"], ids)
        assert set(e.get("aliases") or []) <= ids, (e["aliases"], ids)


def test_explicit_alias_pins_the_route(client):
    headers, _ = chat(client, CHAT, model="homelab/code")
    assert route_of(headers) == "hands"


def test_coding_prompt_lands_on_coding_node(client):
    headers, completion = chat(client, CODING)
    assert route_of(headers) == "hands"
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens > 0


def test_chat_prompt_lands_on_chat_node(client):
    headers, completion = chat(client, CHAT)
    assert route_of(headers) == "mouth"
    assert completion.choices[0].message.content


def test_streaming_through_caddy(client):
    raw = client.chat.completions.with_raw_response.create(
        model="homelab/auto", max_tokens=8, stream=True,
        messages=[{"role": "user", "content": CHAT}])
    assert route_of(raw.headers) == "mouth"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()


IMAGE_CONTENT = [{"type": "text", "text": "Hello, what is in this picture?"},
                 {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_SMALL}"}}]


def _send_image(client):
    """(status, headers, body) of an image-bearing chat request; restores eyes afterwards."""
    import openai
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="homelab/auto", max_tokens=8, messages=[{"role": "user", "content": IMAGE_CONTENT}])
        return 200, raw.headers, raw.parse().model_dump()
    except openai.APIStatusError as err:
        return err.status_code, err.response.headers, err.response.json()
    finally:
        # A 5xx marks eyes down until its next probe: let the next tests start from a healthy lab.
        wait_until(lambda: _route_ok(client, "eyes"), timeout=60, what="eyes routable again")


def test_image_request_goes_to_vision_node(client):
    """The image part picks the vision bucket and its route (eyes), whatever the words say (the text alone
    would be a chat prompt for mouth); the eyes' llama-server has a multimodal projector (--mmproj), so it
    really takes the image and answers."""
    status, headers, body = _send_image(client)
    assert status == 200, (status, dict(headers), body)
    assert headers.get("x-homelab-bucket") == "vision", dict(headers)
    assert headers.get(ROUTE_HEADER) == "eyes", dict(headers)
    assert body["choices"][0]["message"]["content"], body


def test_image_pinned_to_blind_route_is_refused_by_router(client):
    """An image pinned to a route that cannot see gets the router's 400 naming the routes that can,
    and never reaches the blind engine."""
    import openai
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="homelab/chat", max_tokens=8,
                                       messages=[{"role": "user", "content": IMAGE_CONTENT}])
    text = json.dumps(err.value.response.json())
    assert "eyes" in text and "brain" in text, text


def test_engine_4xx_reaches_client_unchanged(client):
    """A request the engine itself rejects (a prompt over hands' 8k context) comes back as the
    engine's own 4xx from the route that was chosen: no failover, no 503."""
    import openai
    prompt = "please refactor this code " * 4000           # ~16k tokens for the tiny tokenizer
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="homelab/auto", max_tokens=8,
                                       messages=[{"role": "user", "content": prompt}])
    assert route_of(err.value.response.headers) == "hands", dict(err.value.response.headers)
    body = err.value.response.json()
    assert "context" in json.dumps(body).lower(), body
    # The route stays healthy: a 4xx is the client's answer, not an engine failure.
    headers, completion = chat(client, CODING)
    assert route_of(headers) == "hands"


def test_embeddings_without_an_embedding_route_are_a_clear_4xx(client):
    """The example site names no embeddings route (router_embeddings_route: null): the router says so
    with an OpenAI-shaped 4xx instead of sending the request to a chat model."""
    import openai
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model="homelab/auto", input=["hello world", "gpu"])
    assert 400 <= err.value.status_code < 500, (err.value.status_code, err.value.body)
    assert "embedding" in json.dumps(err.value.response.json()).lower()


def test_stopped_engine_fails_over(lab, client):
    with stopped_engine(lab, client, "hands"):
        headers, completion = chat(client, CODING)
        assert route_of(headers) == "brain", dict(headers)
        assert completion.choices[0].message.content


def test_saturated_engine_spills(lab, client):
    """mouth has the example's three slots and no queue: while three long streams hold them, the next
    chat request spills to brain (seed 003: the fourth caller goes to the fallback, never queues)."""
    holders = []
    try:
        for _ in range(3):
            holder = client.chat.completions.with_raw_response.create(
                model="homelab/auto", max_tokens=2000, stream=True, temperature=1.0,
                messages=[{"role": "user", "content": CHAT}])
            holders.append(holder)
            assert route_of(holder.headers) == "mouth"
            next(iter(holder.parse()))          # the slot is taken; stop reading
        headers, completion = chat(client, CHAT)
        assert route_of(headers) == "brain", dict(headers)
        assert completion.choices[0].message.content
    finally:
        for holder in holders:
            holder.http_response.close()
    # The slot comes back once the holder is gone.
    wait_until(lambda: _route_ok(client, "mouth"), timeout=60, what="mouth free again")


def test_terminal_node_down_gives_503(lab, client):
    import openai
    with stopped_engine(lab, client, "brain"):
        with pytest.raises(openai.APIStatusError) as exc:
            chat(client, REASONING)
        assert exc.value.status_code == 503, exc.value.body


def test_no_key_is_401(http):
    r = http.post("/v1/chat/completions", json={"model": "homelab/auto", "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": CHAT}]})
    assert r.status_code == 401, r.text
    r = http.post("/v1/chat/completions", headers={"Authorization": "Bearer hlr_not_a_key"},
                  json={"model": "homelab/auto", "max_tokens": 4,
                        "messages": [{"role": "user", "content": CHAT}]})
    assert r.status_code == 401, r.text


def test_budget_is_enforced_with_429(lab):
    import httpx
    import openai
    app = f"lab-budget-{int(time.time())}"
    budget_flags = lab["lab"].vars.get("lab_tiny_budget_flags", ["--tokens-per-day", "50"])
    key = labmod.create_key(lab["lab"], app, list(budget_flags))
    http_client = httpx.Client(verify=ssl.create_default_context(cafile=str(lab["ca"])), timeout=60)
    tiny = openai.OpenAI(base_url=lab["lab"].endpoint, api_key=key, http_client=http_client, max_retries=0)
    try:
        # The router notices keys created by the CLI on its next store poll (about a second).
        wait_until(lambda: _status_of(tiny) != 401, timeout=30, interval=0.5,
                   what="the new key to be accepted")
        codes = []
        for _ in range(10):
            try:
                chat(tiny, CHAT, max_tokens=16)
                codes.append(200)
            except openai.APIStatusError as err:
                codes.append(err.status_code)
                if err.status_code == 429:
                    break
        assert 429 in codes, codes
    finally:
        http_client.close()
        labmod.run([*labmod.router_cli(lab["lab"]), "keys", "revoke", "--config",
                    labmod.router_config_path(lab["lab"]), app], check=False)


def _status_of(client) -> int:
    import openai
    try:
        chat(client, CHAT, max_tokens=16)
        return 200
    except openai.APIStatusError as err:
        return err.status_code


def test_netdata_parent_lists_every_node(lab):
    inv = lab["lab"]
    gw = inv.container(inv.gateway)
    port = inv.vars.get("lab_netdata_port", 19999)

    def mirrored():
        proc = podman_exec(gw, "curl", "-fsS", f"http://127.0.0.1:{port}/api/v1/info", check=False)
        if proc.returncode != 0:
            return None
        hosts = set(json.loads(proc.stdout).get("mirrored_hosts") or [])
        return hosts if inv.groups["netdata"] <= hosts else None

    hosts = wait_until(mirrored, timeout=120, interval=2, what="netdata parent mirroring every netdata host")
    assert inv.groups["netdata"] <= hosts


def test_each_host_runs_the_system_its_inventory_names(lab):
    """The GPU nodes boot Ubuntu 24.04 as the seeds' machines run it (`lab_image: ubuntu2404` in inventory/lab), the
    rest Debian 12; the engines, agents and Netdata on them are the ones the other tests exercise."""
    inv = lab["lab"]
    want = {h: inv.hostvars[h].get("lab_image", "debian12") for h in inv.hosts}
    assert {h for h, k in want.items() if k == "ubuntu2404"} >= {"ubuntu-4090", "ubuntu-6000", "spark"}, want
    for host, kind in want.items():
        rel = podman_exec(inv.container(host), "cat", "/etc/os-release").stdout
        fields = dict(line.split("=", 1) for line in rel.splitlines() if "=" in line)
        got = (fields["ID"], fields["VERSION_ID"].strip('"'))
        assert got == {"ubuntu2404": ("ubuntu", "24.04"), "debian12": ("debian", "12")}[kind], (host, got)
