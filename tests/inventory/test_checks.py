"""The validation checks, called directly on the example inventory's model with one fault injected per case."""
from __future__ import annotations

import pytest

from conftest import assert_error, engine, hi


def errors(model, **settings):
    return hi.check_model(model, settings or None)


def test_example_model_is_clean(model):
    assert errors(model) == []


def test_every_error_renders_host_field_reason(model):
    model["site"]["homelab_vlans"][0]["id"] = 0
    [e] = errors(model)
    assert str(e) == f"{e.host}: {e.field}: {e.reason}"
    assert (e.host, e.field) == ("all", "homelab_vlans[0].id")


# --------------------------------------------------------------------------------------------------------------
# (mutation, host, field, reason fragments): each case breaks exactly one thing.

def _vlan(m, i):
    return m["site"]["homelab_vlans"][i]


def _set(path_fn, key, value):
    def mutate(m):
        path_fn(m)[key] = value
    return mutate


def _del(path_fn, key):
    def mutate(m):
        del path_fn(m)[key]
    return mutate


def _eng(host, i=0):
    return lambda m: engine(m, host, i)


def _hv(host):
    return lambda m: m["hostvars"][host]


def _site(m):
    return m["site"]


def _dup_vlan_id(m):
    _vlan(m, 3)["id"] = _vlan(m, 0)["id"]


def _dup_vlan_name(m):
    _vlan(m, 2)["name"] = "ai"
    # keep the hosts of 'services' addressed: move them to the first 'ai' entry's subnet is not needed - the
    # duplicate name is the point; the index keeps the first definition.


def _dup_route(m):
    engine(m, "ubuntu-6000")["route"] = "eyes"


def _second_engine_port(m):
    extra = dict(engine(m, "ubuntu-4090"))
    extra.update(route="eyes-json", served_name="x", aliases=[], gpu_memory_utilization=0.2, params_b=0.5,
                 context=4096)
    m["hostvars"]["ubuntu-4090"]["engines"].append(extra)


def _router_port_on_caddy(m):
    m["hostvars"]["ai-gateway"]["homelab_router_port"] = 443


def _netdata_on_ssh(m):
    m["hostvars"]["hub"]["netdata_port"] = 22


def _hub_service_on_netdata(m):
    m["hostvars"]["hub"]["homelab_services"][0]["port"] = 19999


def _share_gpu_oversubscribed(m):
    extra = dict(engine(m, "ubuntu-6000"))
    extra.update(route="hands-small", served_name="small", aliases=[], port=8001, params_b=1, context=4096,
                 gpu_memory_utilization=0.2)
    m["hostvars"]["ubuntu-6000"]["engines"].append(extra)


def _unified_no_reserve(m):
    engine(m, "spark")["gpu_memory_utilization"] = 0.97


def _no_terminal(m):
    e = engine(m, "spark")
    e["terminal"] = False
    e["failover"] = "eyes"


def _cycle(m):
    engine(m, "ubuntu-6000")["failover"] = "mouth"
    engine(m, "win-5090")["failover"] = "hands"
    engine(m, "win-5090")["spill"] = "hands"


def _image_cycle(m):
    """Only image requests loop: eyes -spill.image-> brain -spill.image-> eyes; text chains end at hands."""
    hands = engine(m, "ubuntu-6000")
    hands.update(vision=True, terminal=True)
    hands.pop("failover")
    hands.pop("spill")
    brain = engine(m, "spark")
    brain.update(terminal=False, spill={"image": "eyes"}, failover="hands")


def _engine_off_gpu_nodes(m):
    m["groups"]["gpu_nodes"].remove("win-5090")
    m["groups"]["windows"].remove("win-5090")
    # its route disappears, so point the others elsewhere to isolate the one error
    for host in ("ubuntu-4090", "ubuntu-6000"):
        e = engine(m, host)
        if isinstance(e.get("spill"), dict):
            e["spill"]["text"] = "brain"
        else:
            e["spill"] = "brain"
    for b in m["site"]["router_buckets"].values():
        if b["route"] == "mouth":
            b["route"] = "brain"


CASES = {
    # VLANs
    "vlan id 0": (_set(lambda m: _vlan(m, 0), "id", 0), "all", "homelab_vlans[0].id", "outside 1-4094"),
    "vlan id 4095": (_set(lambda m: _vlan(m, 1), "id", 4095), "all", "homelab_vlans[1].id", "4095", "outside 1-4094"),
    "vlan id not int": (_set(lambda m: _vlan(m, 1), "id", "20"), "all", "homelab_vlans[1].id", "integer"),
    "vlan id duplicate": (_dup_vlan_id, "all", "homelab_vlans[3].id", "duplicated", "mgmt"),
    "vlan name duplicate": (_dup_vlan_name, "all", "homelab_vlans[2].name", "duplicate VLAN name 'ai'"),
    "vlan bad subnet": (_set(lambda m: _vlan(m, 4), "subnet", "10.66.0.1/24"), "all", "homelab_vlans[4].subnet",
                        "not an IPv4 network"),
    "vlan overlapping subnet": (_set(lambda m: _vlan(m, 4), "subnet", "10.0.0.0/8"), "all",
                                "homelab_vlans[4].subnet", "overlaps", "mgmt"),
    "vlan isolated not bool": (_set(lambda m: _vlan(m, 4), "isolated", "yes"), "all",
                               "homelab_vlans[4].isolated", "true or false"),
    # addresses
    "address outside subnet": (_set(_hv("ubuntu-4090"), "homelab_address", "10.30.0.99"), "ubuntu-4090",
                               "homelab_address", "10.30.0.99", "outside VLAN 'ai'", "10.20.0.0/24"),
    "address not ipv4": (_set(_hv("hub"), "homelab_address", "hub.lan"), "hub", "homelab_address",
                         "not an IPv4 address"),
    "address is broadcast": (_set(_hv("hub"), "homelab_address", "10.30.0.255"), "hub", "homelab_address",
                             "broadcast"),
    "address duplicated": (_set(_hv("hub"), "homelab_address", "10.30.0.10"), "hub", "homelab_address",
                           "also the address of host ai-gateway"),
    "address missing": (_del(_hv("spark"), "homelab_address"), "spark", "homelab_address", "required"),
    "unknown vlan": (_set(_hv("spark"), "homelab_vlan", "overlay"), "spark", "homelab_vlan",
                     "unknown VLAN 'overlay'"),
    # ports
    "engine on ssh port": (_set(_eng("ubuntu-4090"), "port", 22), "ubuntu-4090", "engines[0].port",
                           "port 22", "already used by ssh"),
    "two engines one port": (_second_engine_port, "ubuntu-4090", "engines[1].port", "port 8000",
                             "already used by engine 'eyes'"),
    "router on caddy https": (_router_port_on_caddy, "ai-gateway", "caddy_https_port", "443",
                              "already used by router"),
    "router on caddy admin": (_set(_site, "homelab_router_port", 2019), "ai-gateway", "caddy_admin_listen",
                               "2019", "already used by router"),
    "netdata on ssh": (_netdata_on_ssh, "hub", "netdata_port", "port 22", "already used by ssh"),
    "extra service clash": (_hub_service_on_netdata, "hub", "homelab_services[0].port", "19999",
                            "already used by netdata"),
    "engine port out of range": (_set(_eng("spark"), "port", 70000), "spark", "engines[0].port", "1-65535"),
    # engine fields
    "unknown runtime": (_set(_eng("win-5090"), "runtime", "tgi"), "win-5090", "engines[0].runtime",
                        "unknown runtime 'tgi'", "vllm, ollama, llama_server, lmstudio"),
    "missing model": (_del(_eng("ubuntu-6000"), "model"), "ubuntu-6000", "engines[0].model", "required"),
    "missing served_name": (_del(_eng("spark"), "served_name"), "spark", "engines[0].served_name", "required"),
    "params_b string": (_set(_eng("spark"), "params_b", "35B"), "spark", "engines[0].params_b",
                        "number > 0", "string"),
    "weight_bits zero": (_set(_eng("spark"), "weight_bits", 0), "spark", "engines[0].weight_bits", "(0, 32]"),
    "context float": (_set(_eng("spark"), "context", 4096.5), "spark", "engines[0].context", "integer"),
    "utilization > 1": (_set(_eng("spark"), "gpu_memory_utilization", 1.5), "spark",
                        "engines[0].gpu_memory_utilization", "(0, 1]"),
    "missing port": (_del(_eng("win-5090"), "port"), "win-5090", "engines[0].port", "required"),
    "vision not bool": (_set(_eng("ubuntu-4090"), "vision", "yes"), "ubuntu-4090", "engines[0].vision",
                        "true or false"),
    "max_concurrency 0": (_set(_eng("win-5090"), "max_concurrency", 0), "win-5090",
                          "engines[0].max_concurrency", ">= 1"),
    "aliases not list": (_set(_eng("win-5090"), "aliases", "homelab/chat"), "win-5090", "engines[0].aliases",
                         "list of strings"),
    "spill bad key": (_set(_eng("ubuntu-4090"), "spill", {"txt": "mouth"}), "ubuntu-4090", "engines[0].spill",
                      "unknown key", "txt"),
    "route name with dot": (_set(_eng("win-5090"), "route", "mouth.v2"), "win-5090", "engines[0].route",
                            "must match"),
    "engines not list": (_set(_hv("spark"), "engines", {"route": "brain"}), "spark", "engines", "must be a list"),
    "gpu vram missing": (_set(_hv("spark"), "gpus", [{"name": "GB10"}]), "spark", "gpus[0].vram_gib",
                         "number > 0"),
    "engines off gpu_nodes": (_engine_off_gpu_nodes, "win-5090", "engines", "not in group gpu_nodes"),
    # memory fit
    "engine too big": (_set(_eng("ubuntu-4090"), "params_b", 32), "ubuntu-4090",
                       "engines[0].gpu_memory_utilization", "does not fit", "RTX 4090 Laptop GPU 16 GiB x 0.78"),
    "kv override too big": (_set(_eng("win-5090"), "kv_gib", 20), "win-5090", "engines[0].gpu_memory_utilization",
                            "does not fit", "from kv_gib"),
    "utilization oversubscribed": (_share_gpu_oversubscribed, "ubuntu-6000", "gpus[0]",
                                   "RTX PRO 6000", "1.12", "hands=0.92, hands-small=0.2", "per card must be <= 1"),
    "unified memory reserve": (_unified_no_reserve, "spark", "gpus[0]",
                               "unified memory", "reserved for the OS"),
    # routes and the fallback graph
    "duplicate route": (_dup_route, "ubuntu-6000", "engines[0].route", "duplicate route name 'eyes'",
                        "ubuntu-4090"),
    "spill to missing route": (_set(_eng("ubuntu-6000"), "spill", "mouht"), "ubuntu-6000", "engines[0].spill",
                               "'mouht'", "no engine serves"),
    "failover to missing route": (_set(_eng("win-5090"), "failover", "brian"), "win-5090",
                                  "engines[0].failover", "'brian'", "no engine serves"),
    "spill.image to missing route": (_set(_eng("ubuntu-4090"), "spill", {"text": "mouth", "image": "eye"}),
                                     "ubuntu-4090", "engines[0].spill.image", "'eye'", "no engine serves"),
    "image spill to blind route": (_set(_eng("ubuntu-4090"), "spill", {"text": "mouth", "image": "mouth"}),
                                   "ubuntu-4090", "engines[0].spill.image", "has no vision"),
    "plain spill from vision route to blind": (_set(_eng("ubuntu-4090"), "spill", "mouth"), "ubuntu-4090",
                                               "engines[0].spill", "has no vision", "image: <vision route>"),
    "image failover to blind route": (_set(_eng("ubuntu-4090"), "failover", "hands"), "ubuntu-4090",
                                      "engines[0].failover", "fails over image requests to 'hands'",
                                      "no vision"),
    "spill to itself": (_set(_eng("win-5090"), "spill", "mouth"), "win-5090", "engines[0].spill", "itself"),
    "no terminal route": (_no_terminal, "gpu_nodes", "engines[*].terminal", "no route is terminal"),
    "terminal with failover": (_set(_eng("spark"), "failover", "hands"), "spark", "engines[0].terminal",
                               "must not spill or fail over"),
    "non-terminal without failover": (_del(_eng("win-5090"), "failover"), "win-5090", "engines[0].failover",
                                      "needs a failover", "terminal"),
    "text cycle": (_cycle, "win-5090", "engines[0].spill", "fallback cycle for text requests",
                   "mouth -> hands -> mouth"),
    "image cycle": (_image_cycle, "ubuntu-4090", "engines[0].spill.image", "cycle for image requests",
                    "eyes -> brain -> eyes"),
    "duplicate alias": (_set(_eng("win-5090"), "aliases", ["homelab/chat", "homelab/code"]), "win-5090",
                        "engines[0].aliases[1]", "'homelab/code'", "route 'hands'"),
    # router settings
    "bucket to missing route": (lambda m: m["site"]["router_buckets"]["coding"].update(route="handz"),
                                "ai-gateway", "router_buckets.coding.route", "'handz'", "no engine serves"),
    "bucket keywords not list": (lambda m: m["site"]["router_buckets"]["coding"].update(keywords="code"),
                                 "ai-gateway", "router_buckets.coding.keywords", "list"),
    "tie_break unknown bucket": (lambda m: m["site"]["router_tie_break"].append("chat"), "ai-gateway",
                                 "router_tie_break[10]", "'chat'", "does not define"),
    "promotion to missing route": (lambda m: m["site"]["router_size_promotions"]["fast"][1].update(route="brian"),
                                   "ai-gateway", "router_size_promotions.fast[1].route", "'brian'"),
    "promotion for missing bucket": (lambda m: m["site"]["router_size_promotions"].update(chat=[]), "ai-gateway",
                                     "router_size_promotions.chat", "'chat'", "does not define"),
    "embeddings route missing": (_set(_site, "router_embeddings_route", "embed"), "ai-gateway",
                                 "router_embeddings_route", "'embed'", "no engine serves"),
    "embeddings route not embeddings": (_set(_site, "router_embeddings_route", "eyes"), "ai-gateway",
                                        "router_embeddings_route", "embeddings: true"),
    "router port out of range": (_set(_site, "homelab_router_port", 0), "ai-gateway", "homelab_router_port",
                                 "1-65535"),
    # router's own schema (no inventory-side rule): mapped back to host and field
    "router schema: unknown bucket required": (lambda m: m["site"]["router_buckets"].pop("unknown"), "ai-gateway",
                                               "router_buckets", "router schema", "'unknown' is required"),
    "router schema: vision bucket on blind route": (
        lambda m: m["site"]["router_buckets"]["vision"].update(route="mouth"), "ai-gateway",
        "router_buckets.vision.route", "router schema", "no vision"),
    "router schema: duplicate keyword": (
        lambda m: m["site"]["router_buckets"]["coding"]["keywords"].append("code"), "ai-gateway",
        "router_buckets.coding.keywords[5]", "router schema", "duplicate keyword"),
    "router schema: alias reserved": (_set(_eng("win-5090"), "aliases", ["homelab/auto"]), "win-5090",
                                      "engines[0].aliases[0]", "router schema", "route 'mouth'", "reserved"),
    # LXC guests
    "lxc vmid duplicate": (lambda m: m["hostvars"]["hub"]["lxc"].update(vmid=110), "hub", "lxc.vmid",
                           "also used by host ai-gateway"),
    "lxc vmid too small": (lambda m: m["hostvars"]["hub"]["lxc"].update(vmid=42), "hub", "lxc.vmid", "100-"),
    "lxc missing": (_del(_hv("ai-gateway"), "lxc"), "ai-gateway", "lxc", "required"),
    # secrets (only checked when readable)
    "vault key for unknown route": (_set(_hv("ai-gateway"), "vault_engine_api_keys", {"eyes": "k", "ears": "k"}),
                                    "ai-gateway", "vault_engine_api_keys.ears", "no engine serves"),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_broken_inventory_is_reported(model, case):
    mutate, host, field, *reason = CASES[case]
    mutate(model)
    errs = errors(model)
    assert_error(errs, host, field, *reason)
    for e in errs:
        assert e.host and e.field and e.reason, e


def test_all_errors_are_collected_at_once(model):
    """Several independent faults: every one is reported, none masks another."""
    for case in ("vlan id 4095", "address outside subnet", "engine on ssh port", "unknown runtime",
                 "engine too big", "bucket to missing route", "lxc vmid duplicate"):
        CASES[case][0](model)
    errs = errors(model)
    for case in ("vlan id 4095", "address outside subnet", "engine on ssh port", "unknown runtime",
                 "engine too big", "bucket to missing route", "lxc vmid duplicate"):
        _, host, field, *reason = CASES[case]
        assert_error(errs, host, field, *reason)


def test_errors_are_sorted_and_unique(model):
    CASES["text cycle"][0](model)
    CASES["vlan id 0"][0](model)
    errs = errors(model)
    assert errs == sorted(set(errs), key=lambda e: (e.host, e.field))


def test_router_schema_can_be_switched_off(model):
    model["site"]["router_buckets"].pop("unknown")
    assert errors(model, router_schema=False) == []


def test_cpu_only_host_needs_no_gpu_fields(model):
    """A lab-style engine on a host with gpus: [] has no gpu_memory_utilization and no fit check."""
    hv = model["hostvars"]["win-5090"]
    hv["gpus"] = []
    del engine(model, "win-5090")["gpu_memory_utilization"]
    engine(model, "win-5090")["params_b"] = 500
    assert errors(model) == []


def test_gpu_node_without_engines_key(model):
    del model["hostvars"]["win-5090"]["engines"]
    errs = errors(model)
    assert_error(errs, "win-5090", "engines", "required on a gpu_nodes host")


def test_missing_vlans(model):
    del model["site"]["homelab_vlans"]
    errs = errors(model)
    assert_error(errs, "all", "homelab_vlans", "required")


def test_kv_allowance_is_configurable(model):
    # a huge per-1K-token allowance makes the 128K-context hands engine too big
    errs = errors(model, kv_gib_per_1k_tokens=1.0)
    assert_error(errs, "ubuntu-6000", "engines[0].gpu_memory_utilization", "does not fit")


@pytest.mark.parametrize("params_b,bits,context,expected", [
    (7.6, 4, 32768, 7.6e9 * 4 / 8 / 2 ** 30 + 4.0 + 2.0),
    (35, 8, 131072, 35e9 / 2 ** 30 + 16.0 + 2.0),
])
def test_engine_memory_formula(params_b, bits, context, expected):
    mem = hi.engine_memory({"params_b": params_b, "weight_bits": bits, "context": context})
    assert mem["total_gib"] == pytest.approx(expected)
    assert mem["kv_gib"] == pytest.approx(context / 1024 * 0.125)


def test_gather_model_records_undefined_variables():
    class Broken(dict):
        def __getitem__(self, key):
            if key == "engines":
                raise RuntimeError("'gpu_model' is undefined")
            return super().__getitem__(key)

    hostvars = {"n1": Broken(homelab_address="10.20.0.30", homelab_vlan="ai", engines=None,
                             vault_engine_api_keys=None)}
    model = hi.gather_model(hostvars, {"all": ["n1"], "gpu_nodes": ["n1"]}, {})
    [err] = model["errors"]
    assert (err.host, err.field) == ("n1", "engines")
    assert "undefined" in err.reason
