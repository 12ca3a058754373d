"""GPUs as cards, unified memory, one Ollama with many models, engine flags the pinned version has (issue 12):
the seeds' machines validate as they are; every broken variant is refused naming host, field and reason."""
from __future__ import annotations

import copy

import pytest

from conftest import assert_error, engine, hi

UUID_6000 = "GPU-5f1c2a9e-0d3b-4c7e-9a61-2b8d4e6f7a10"


def errors(model, **settings):
    return hi.check_model(model, settings or None)


def workstation(m):
    """Seed 003's workstation as it is: ONE box, the internal 16 GiB 4090 (vLLM at 0.78, the eyes) and the 96 GiB
    RTX PRO 6000 eGPU (vLLM at 0.92, the hands), each engine on its own card. Cards listed out of bus order."""
    hands_host = m["hostvars"].pop("ubuntu-6000")
    for g in m["groups"].values():
        if "ubuntu-6000" in g:
            g.remove("ubuntu-6000")
    hv = m["hostvars"]["ubuntu-4090"]
    hv["gpus"] = [
        {"name": "RTX PRO 6000 Blackwell", "vram_gib": 96, "uuid": UUID_6000, "pci_bus_id": "00000000:0B:00.0"},
        {"name": "RTX 4090 Laptop GPU", "vram_gib": 16, "pci_bus_id": "0000:01:00.0"},
    ]
    hv["engines"][0]["gpus"] = ["0000:01:00.0"]
    hands = copy.deepcopy(hands_host["engines"][0])
    hands.update(port=8001, gpus=[UUID_6000])
    hv["engines"].append(hands)
    return m


def test_seed_003_workstation_validates_card_by_card(model):
    assert errors(workstation(model)) == []


def test_pooled_split_that_cannot_fit_is_refused(model):
    """The old per-host pool accepted 0.3/0.7 across 16+96 GiB; per card the hands (GLM-4.5-Air) does not fit."""
    m = workstation(model)
    engine(m, "ubuntu-4090", 1)["gpus"] = ["RTX 4090 Laptop GPU"]
    engine(m, "ubuntu-4090", 1)["gpu_memory_utilization"] = 0.2
    engine(m, "ubuntu-4090", 0)["gpu_memory_utilization"] = 0.78
    errs = errors(m)
    assert_error(errs, "ubuntu-4090", "engines[1].gpu_memory_utilization", "does not fit",
                 "RTX 4090 Laptop GPU 16 GiB x 0.2", "weights 106B x 4 bit")


def test_cuda_env_by_identity_not_inventory_order(model):
    m = workstation(model)
    gpus = m["hostvars"]["ubuntu-4090"]["gpus"]
    eyes, hands = m["hostvars"]["ubuntu-4090"]["engines"]
    env = hi.homelab_gpus.cuda_env
    assert env(eyes, gpus) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
    assert env(hands, gpus)["CUDA_VISIBLE_DEVICES"] == UUID_6000
    assert env(eyes, list(reversed(gpus))) == env(eyes, gpus)  # the order of the list never matters
    assert env({"route": "x", "gpus": ["RTX 4090 Laptop GPU", UUID_6000]}, gpus)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env({"route": "x"}, [{"name": "one", "vram_gib": 8}]) == \
        {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
    assert env({"route": "x"}, []) == {}


def _two_cards_tp(m, tp=None):
    m = workstation(m)
    e = engine(m, "ubuntu-4090", 1)
    e["gpus"] = [UUID_6000, "00000000:01:00.0"]
    e["gpu_memory_utilization"] = 0.2  # 0.78 (eyes) + 0.2 on the 4090, 0.2 on the 6000
    e.update(params_b=7, context=8192)
    if tp is not None:
        e["args"]["tensor_parallel_size"] = tp
    return m


def test_tensor_parallel_across_the_cards_named(model):
    assert errors(_two_cards_tp(copy.deepcopy(model))) == []
    assert errors(_two_cards_tp(model, tp=2)) == []


def _ollama_host(m, **changes):
    """A 3090 box with one Ollama serving two models on one port (each its own route, alias and keep_alive)."""
    hv = m["hostvars"]["ubuntu-4090"]
    hv["gpus"] = [{"name": "RTX 3090", "vram_gib": 24}]
    base = {"runtime": "ollama", "port": 11434, "weight_bits": 4.5, "context": 8192, "max_concurrency": 2,
            "max_queue": 4}
    hv["engines"][0].update(base, model="qwen2.5vl:7b", served_name="qwen2.5vl:7b", params_b=8, keep_alive="-1",
                            args={})
    hv["engines"][0].pop("gpu_memory_utilization")
    chat = dict(base, route="eyes-chat", model="llama3.1:8b", served_name="llama3.1:8b", params_b=8,
                keep_alive="10m", aliases=["homelab/eyes-chat"], failover="brain", args={})
    chat.update(changes)
    hv["engines"].append(chat)
    return m


def test_one_ollama_many_models_validates(model):
    assert errors(_ollama_host(model)) == []


# (mutation, host, field, reason fragments) - one broken rule each (issue 12 item 8)
CASES = {
    "engine names no card on a two-card host": (
        lambda m: engine(workstation(m), "ubuntu-4090", 1).pop("gpus"),
        "ubuntu-4090", "engines[1].gpus", "2 cards", "name the card"),
    "engine names a card the host lacks": (
        lambda m: engine(workstation(m), "ubuntu-4090", 1).update(gpus=["GPU-00000000-0000-0000-0000-000000000000"]),
        "ubuntu-4090", "engines[1].gpus", "matches none of the host's cards"),
    "two cards share one utilization budget": (
        lambda m: engine(workstation(m), "ubuntu-4090", 1).update(gpus=["RTX 4090 Laptop GPU"], params_b=1,
                                                                  context=4096),
        "ubuntu-4090", "gpus[1]", "RTX 4090 Laptop GPU", "eyes=0.78, hands=0.92", "per card must be <= 1"),
    "card without identity on a multi-card host": (
        lambda m: workstation(m)["hostvars"]["ubuntu-4090"]["gpus"][1].pop("pci_bus_id"),
        "ubuntu-4090", "gpus[1]", "uuid or pci_bus_id", "not by inventory order"),
    "malformed gpu uuid": (
        lambda m: m["hostvars"]["ubuntu-6000"]["gpus"][0].update(uuid="5f1c2a9e"),
        "ubuntu-6000", "gpus[0].uuid", "not a GPU UUID"),
    "malformed pci bus id": (
        lambda m: m["hostvars"]["ubuntu-6000"]["gpus"][0].update(pci_bus_id="slot 3"),
        "ubuntu-6000", "gpus[0].pci_bus_id", "not a PCI bus id"),
    "one card listed twice": (
        lambda m: workstation(m)["hostvars"]["ubuntu-4090"]["gpus"][0].update(pci_bus_id="01:00.0"),
        "ubuntu-4090", "gpus[1].pci_bus_id", "also gpus[0]'s pci_bus_id", "listed twice"),
    "tensor parallel size differs from the cards named": (
        lambda m: _two_cards_tp(m, tp=4),
        "ubuntu-4090", "engines[1].args.tensor_parallel_size", "= 4 GPUs", "names 2 card(s)"),
    "tp across cards: the smallest card bounds it": (
        lambda m: engine(_two_cards_tp(m), "ubuntu-4090", 1).update(params_b=106, context=131072),
        "ubuntu-4090", "engines[1].gpu_memory_utilization", "does not fit",
        "2 cards x min(RTX PRO 6000 Blackwell 96 GiB, RTX 4090 Laptop GPU 16 GiB) x 0.2"),
    "unified memory: spark over its unified RAM": (
        lambda m: engine(m, "spark").update(params_b=235, weight_bits=8),
        "spark", "engines[0].gpu_memory_utilization", "does not fit", "NVIDIA GB10 (DGX Spark) 128 GiB x 0.9"),
    "unified gpu beside another card": (
        lambda m: m["hostvars"]["spark"]["gpus"].append({"name": "RTX 4090", "vram_gib": 24}),
        "spark", "gpus", "unified-memory GPU", "only card"),
    "engine names a card on a cpu-only host": (
        lambda m: (m["hostvars"]["spark"].update(gpus=[]), engine(m, "spark").update(gpus=["GB10"])),
        "spark", "engines[0].gpus", "lists no cards"),
    "ollama models need more than the card": (
        lambda m: _ollama_host(m, params_b=70),
        "ubuntu-4090", "gpus[0]", "without a fixed share", "RTX 3090", "24 GiB x (1 - 0 claimed)"),
    "ollama: two entries with one model name": (
        lambda m: _ollama_host(m, served_name="qwen2.5vl:7b", model="qwen2.5vl:7b"),
        "ubuntu-4090", "ollama_engines[1].served_name", "also ollama_engines[0]'s"),
    "ollama: keep_alive is not a duration": (
        lambda m: _ollama_host(m, keep_alive="forever"),
        "ubuntu-4090", "engines[1].keep_alive", "duration"),
    "ollama: a second port on one server": (
        lambda m: _ollama_host(m, port=11435),
        "ubuntu-4090", "ollama_engines", "one server per host", "same port"),
    "ollama: gguf_src that is not a GGUF file": (
        lambda m: _ollama_host(m, args={"gguf_src": "files/tiny.bin"}),
        "ubuntu-4090", "ollama_engines[1].args.gguf_src", "local .gguf file"),
    "vllm: flag the pinned version lacks": (
        lambda m: engine(m, "ubuntu-6000")["args"].update(kv_cache_dtype="turboquant_k8v4"),
        "ubuntu-6000", "vllm_engines[0].args.kv_cache_dtype", "turboquant_k8v4", "vLLM 0.11.0",
        "fp8_e5m2"),
    "vllm: unknown flag": (
        lambda m: engine(m, "ubuntu-4090")["args"].update(enable_turbo=True),
        "ubuntu-4090", "vllm_engines[0].args.enable_turbo", "--enable-turbo is not a flag of vLLM 0.11.0"),
    "vllm: json sub-value the version lacks": (
        lambda m: engine(m, "ubuntu-6000")["args"].update(speculative_config={"method": "none"}),
        "ubuntu-6000", "vllm_engines[0].args.speculative_config", "method 'none'", "vLLM 0.11.0"),
    "vllm: wrong value kind": (
        lambda m: engine(m, "spark")["args"].update(enable_chunked_prefill="yes"),
        "spark", "vllm_engines[0].args.enable_chunked_prefill", "true or false"),
    "vllm: unknown flag in extra": (
        lambda m: engine(m, "spark")["args"].update(extra=["--turbo-mode"]),
        "spark", "vllm_engines[0].args.extra", "--turbo-mode is not a flag"),
    "vllm: no table for the pinned version": (
        lambda m: m["hostvars"]["spark"].update(vllm_version="0.99.0"),
        "spark", "vllm_version", "no flag table for vLLM 0.99.0"),
    "vllm: --host inside args": (
        lambda m: engine(m, "ubuntu-4090")["args"].update(host="127.0.0.1"),
        "ubuntu-4090", "vllm_engines[0].args.host", "set by the role", "vllm_listen_address"),
    "vllm: --port inside args": (
        lambda m: engine(m, "spark")["args"].update(port=9000),
        "spark", "vllm_engines[0].args.port", "set by the role", "engines[].port"),
    "vllm: --served-model-name inside args": (
        lambda m: engine(m, "spark")["args"].update(served_model_name="x"),
        "spark", "vllm_engines[0].args.served_model_name", "engines[].served_name"),
    "llama.cpp/ollama: --host inside args": (
        lambda m: _ollama_host(m, args={"host": "0.0.0.0"}),
        "ubuntu-4090", "ollama_engines[1].args.host", "listen settings are not engine args"),
    "vllm still requires its utilization": (
        lambda m: engine(m, "ubuntu-4090").pop("gpu_memory_utilization"),
        "ubuntu-4090", "engines[0].gpu_memory_utilization", "is required"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_card_engine_and_flag_rules(model, case):
    mutate, host, field, *parts = CASES[case]
    mutate(model)
    errs = errors(model)
    hits = assert_error(errs, host, field, *parts)
    assert all(str(h).startswith(f"{host}: {field}: ") for h in hits)


def test_ollama_and_lmstudio_need_no_utilization(model):
    engine(model, "win-5090").pop("gpu_memory_utilization")
    assert errors(model) == []
    m = _ollama_host(copy.deepcopy(model))
    assert all("gpu_memory_utilization" not in e for e in m["hostvars"]["ubuntu-4090"]["engines"])
    assert errors(m) == []
