"""router_app.decision.inventory: compiling the router config from the inventory, and mapping router errors back."""
from __future__ import annotations

import yaml

from conftest import hi
from router_app.decision import inventory as ri
from router_app.decision.config import validate_dict


def _compile(model, **kw):
    gpu_hosts = {h: model["hostvars"][h] for h in model["groups"]["gpu_nodes"]}
    site = model["site"]
    return ri.compile_router_config(
        gpu_hosts,
        router_port=site["homelab_router_port"],
        buckets=site["router_buckets"],
        tie_break=site["router_tie_break"],
        size_promotions=site["router_size_promotions"],
        embeddings_route=site.get("router_embeddings_route"),
        **kw,
    )


def test_example_compiles_to_one_route_per_engine(model):
    cfg = _compile(model)
    assert list(cfg["routes"]) == ["eyes", "hands", "brain", "mouth"]
    assert cfg["listen"] == {"host": "127.0.0.1", "port": 4000}
    assert cfg["admin_key_env"] == "HOMELAB_ROUTER_ADMIN_KEY"
    assert cfg["routes"]["eyes"] == {
        "url": "http://10.20.0.11:8000/v1",
        "model": "qwen2.5-vl-7b-router-awq",
        "api_key_env": "HOMELAB_ROUTE_EYES_API_KEY",
        "aliases": ["homelab/vision", "homelab/fast"],
        "vision": True,
        "terminal": False,
        "embeddings": False,
        "max_concurrency": 4,
        "max_queue": 2,
        "spill": {"text": "mouth", "image": "brain"},
        "failover": "brain",
        "stream_usage": True,           # vLLM honours stream_options.include_usage
    }
    mouth = cfg["routes"]["mouth"]
    assert mouth["stream_usage"] is False   # LM Studio: stream_options are sent only as the client wrote them
    assert mouth["url"] == "http://10.20.0.14:1234/v1"
    assert (mouth["max_concurrency"], mouth["max_queue"], mouth["vision"]) == (3, 0, False)
    brain = cfg["routes"]["brain"]
    assert brain["terminal"] is True and "spill" not in brain and "failover" not in brain
    assert cfg["buckets"]["unknown"] == {"route": "brain"}
    assert cfg["size_promotions"]["fast"] == [{"over_tokens": 8192, "route": "hands"},
                                               {"over_tokens": 24576, "route": "brain"}]
    assert "embeddings" not in cfg


def test_example_config_passes_the_router_schema(model):
    cfg = _compile(model)
    assert validate_dict(cfg) == []
    # and it survives a YAML round trip (what the router role writes)
    assert validate_dict(yaml.safe_load(yaml.safe_dump(cfg))) == []


def test_adding_a_gpu_node_is_host_vars_only(model):
    """A fifth node: its engine becomes a route with no other edit."""
    model["groups"]["gpu_nodes"].append("ubuntu-3090")
    model["groups"]["all"].append("ubuntu-3090")
    model["hostvars"]["ubuntu-3090"] = {
        **{k: v for k, v in model["hostvars"]["spark"].items()  # what group_vars/all gives every host
           if k.startswith(("vault_", "common_", "ansible_"))},
        "homelab_address": "10.20.0.15", "homelab_vlan": "ai",
        "gpus": [{"name": "RTX 3090", "vram_gib": 24}],
        "engines": [{"route": "ears", "runtime": "llama_server", "model": "whisper.gguf", "served_name": "ears-1",
                     "params_b": 8, "weight_bits": 4, "context": 8192, "gpu_memory_utilization": 0.9,
                     "port": 8080, "failover": "brain"}],
    }
    assert hi.check_model(model) == []
    cfg = _compile(model)
    assert cfg["routes"]["ears"]["url"] == "http://10.20.0.15:8080/v1"
    assert cfg["routes"]["ears"]["api_key_env"] == "HOMELAB_ROUTE_EARS_API_KEY"


def test_embeddings_route_defaults_to_first_embeddings_engine(model):
    model["hostvars"]["ubuntu-4090"]["engines"][0]["embeddings"] = True
    cfg = _compile(model)
    assert cfg["embeddings"] == {"route": "eyes"}
    assert validate_dict(cfg) == []


def test_engine_api_key_env_override_and_extra_keys(model):
    model["hostvars"]["spark"]["engines"][0]["api_key_env"] = "SPARK_KEY"
    cfg = _compile(model, log_dir="/var/log/homelab-router", extra={"store_path": "/var/lib/x.db"})
    assert cfg["routes"]["brain"]["api_key_env"] == "SPARK_KEY"
    assert cfg["log_dir"] == "/var/log/homelab-router"
    assert cfg["store_path"] == "/var/lib/x.db"


def test_api_key_env_names():
    assert ri.api_key_env_for("eyes") == "HOMELAB_ROUTE_EYES_API_KEY"
    assert ri.api_key_env_for("brain-2") == "HOMELAB_ROUTE_BRAIN_2_API_KEY"
    assert ri.api_key_env_for("x_y") == "HOMELAB_ROUTE_X_Y_API_KEY"


def test_route_owners_and_error_mapping(model):
    gpu_hosts = {h: model["hostvars"][h] for h in model["groups"]["gpu_nodes"]}
    owners = ri.route_owners(gpu_hosts)
    assert owners["mouth"] == ri.RouteOwner("win-5090", 0)
    m = ri.map_config_error("routes.mouth.spill", "unknown route 'x'", owners, "ai-gateway")
    assert m == ("win-5090", "engines[0].spill", "route 'mouth': unknown route 'x'")
    assert ri.map_config_error("routes.eyes.url", "bad", owners, "gw")[:2] == ("ubuntu-4090", "engines[0].port")
    assert ri.map_config_error("routes.eyes.model", "bad", owners, "gw")[:2] == ("ubuntu-4090",
                                                                                "engines[0].served_name")
    assert ri.map_config_error("routes.brain", "cycle", owners, "gw")[:2] == ("spark", "engines[0]")
    assert ri.map_config_error("buckets.coding.route", "unknown route", owners, "gw")[:2] == (
        "gw", "router_buckets.coding.route")
    assert ri.map_config_error("size_promotions.fast[0].route", "x", owners, "gw")[:2] == (
        "gw", "router_size_promotions.fast[0].route")
    assert ri.map_config_error("tie_break[2]", "x", owners, "gw")[:2] == ("gw", "router_tie_break[2]")
    assert ri.map_config_error("embeddings.route", "x", owners, "gw")[:2] == ("gw", "router_embeddings_route")
    assert ri.map_config_error("listen.port", "x", owners, "gw")[:2] == ("gw", "homelab_router_port")
    assert ri.map_config_error("routes", "none", owners, "gw")[:2] == ("gpu_nodes", "engines")


def test_validate_router_config_maps_every_error(model):
    cfg = _compile(model)
    cfg["routes"]["mouth"]["max_concurrency"] = 0
    gpu_hosts = {h: model["hostvars"][h] for h in model["groups"]["gpu_nodes"]}
    mapped = ri.validate_router_config(cfg, ri.route_owners(gpu_hosts), "ai-gateway")
    assert [(h, f) for h, f, _ in mapped] == [("win-5090", "engines[0].max_concurrency")]


def test_issue11_site_vars_compile_and_map_back(model):
    """router_structured_fail_closed_buckets / router_route_unknown_models / router_cors_allow_origins."""
    site = model["site"]
    assert site["router_structured_fail_closed_buckets"] == ["vision"]
    cfg = _compile(model, fail_closed_buckets=site["router_structured_fail_closed_buckets"],
                   route_unknown_models=site["router_route_unknown_models"],
                   cors_allow_origins=site["router_cors_allow_origins"])
    assert cfg["structured"] == {"fail_closed_buckets": ["vision"]}
    assert cfg["route_unknown_models"] is False and cfg["cors"] == {"allow_origins": []}
    assert validate_dict(cfg) == []
    assert "structured" not in _compile(model) and "cors" not in _compile(model)   # None: the router's defaults
    owners = ri.route_owners({h: model["hostvars"][h] for h in model["groups"]["gpu_nodes"]})
    for kw, field in (({"fail_closed_buckets": ["cameras"]}, "router_structured_fail_closed_buckets[0]"),
                      ({"cors_allow_origins": ["chat.example"]}, "router_cors_allow_origins")):
        mapped = ri.validate_router_config(_compile(model, **kw), owners, "ai-gateway")
        assert [(h, f) for h, f, _ in mapped] == [("ai-gateway", field)]


def test_router_mode_engine_is_catalogued_on_demand(model):
    """Issue 14: a llama_server engine in router mode (args.models_max) compiles to a catalogued on-demand route."""
    eng = model["hostvars"]["ubuntu-6000"]["engines"][0]
    eng["runtime"] = "llama_server"
    eng["args"] = {"models_max": 2}
    cfg = _compile(model)
    assert cfg["routes"][eng["route"]]["catalog"] == {"engine": "llamacpp_router", "residency": "on_demand",
                                                      "max_resident": 2}
    assert "catalog" not in cfg["routes"]["brain"]
    assert validate_dict(cfg) == []
    eng["catalog"] = {"engine": "vllm", "residency": "elsewhere"}
    assert any("catalog" in e.path for e in validate_dict(_compile(model)))


def test_ollama_keep_alive_compiles_to_the_route(model):
    """Issue 12: an Ollama engine's own keep_alive reaches its route (the router applies it); other runtimes have
    none, and a duration Ollama would refuse is refused by the router's schema too, naming the route's field."""
    eng = model["hostvars"]["ubuntu-6000"]["engines"][0]
    eng.update(runtime="ollama", keep_alive="-1")
    cfg = _compile(model)
    assert cfg["routes"][eng["route"]]["keep_alive"] == "-1"
    assert "keep_alive" not in cfg["routes"]["brain"]
    assert validate_dict(cfg) == []
    eng["runtime"] = "vllm"
    assert "keep_alive" not in _compile(model)["routes"][eng["route"]]
    eng.update(runtime="ollama", keep_alive="forever")
    errs = validate_dict(_compile(model))
    assert any(e.path.endswith("keep_alive") and "forever" in e.message for e in errs), errs
