"""homelab-ai: GPUs as cards, not a pool. One implementation for validation, the preflights and the engine roles.

A host's ``gpus`` lists its cards::

    gpus:
      - {name: RTX 4090 Laptop GPU, vram_gib: 16, pci_bus_id: "00000000:01:00.0"}
      - {name: RTX PRO 6000 Blackwell, vram_gib: 96, uuid: GPU-8f6b...}
      - {name: NVIDIA GB10, vram_gib: 128, unified: true}          # DGX Spark: CPU+GPU share the memory

An engine names the card(s) it runs on in ``engines[i].gpus`` (a list of a card's ``uuid``, ``pci_bus_id`` or its
``name`` when that name is unique on the host). On a one-card host the engine may leave it out. Validation then
checks, per card, that the engines' ``gpu_memory_utilization`` sum stays <= 1 and that each engine's estimated
memory fits its share of the cards it names (tensor parallelism splits the engine evenly over them, so the
smallest card bounds it: ``need <= cards x min(vram_gib) x utilization``).

The engine's unit gets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and ``CUDA_VISIBLE_DEVICES`` by identity (filter
``homelab_cuda_env``): a card's UUID when it has one (CUDA accepts ``GPU-<uuid>`` there, see the CUDA C Programming
Guide, "CUDA Environment Variables"), else its index in PCI bus order among the host's cards, which is what
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA count in. Inventory order never matters.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

GPU_UUID_RE = re.compile(r"^(GPU|MIG)-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
# nvidia-smi prints 00000000:01:00.0 (domain:bus:device.function); lspci prints 0000:01:00.0 or 01:00.0.
PCI_BUS_ID_RE = re.compile(r"^(?:([0-9a-fA-F]{4,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
Problem = tuple[str, str]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def normalize_bus_id(value: Any) -> str | None:
    """``01:00.0`` / ``0000:01:00.0`` / ``00000000:01:00.0`` -> ``00000000:01:00.0`` (nvidia-smi's form)."""
    m = PCI_BUS_ID_RE.match(str(value).strip()) if isinstance(value, str) else None
    if not m:
        return None
    domain = int(m.group(1) or "0", 16)
    return f"{domain:08X}:{m.group(2).upper()}:{m.group(3).upper()}.{m.group(4)}"


def _cards(gpus: Any) -> list[Mapping[str, Any]]:
    return [g for g in gpus if isinstance(g, Mapping)] if isinstance(gpus, (list, tuple)) else []


def card_label(card: Mapping[str, Any], index: int) -> str:
    ident = card.get("uuid") or card.get("pci_bus_id")
    return f"gpus[{index}] ({card.get('name', 'gpu')}{', ' + str(ident) if ident else ''})"


def card_problems(gpus: Any) -> list[Problem]:
    """Identity problems of a host's card list (name/vram checks live with the engine schema)."""
    out: list[Problem] = []
    cards = gpus if isinstance(gpus, (list, tuple)) else []
    seen: dict[str, int] = {}
    for j, g in enumerate(cards):
        if not isinstance(g, Mapping):
            continue
        uuid, bus = g.get("uuid"), g.get("pci_bus_id")
        if uuid is not None and not (isinstance(uuid, str) and GPU_UUID_RE.match(uuid)):
            out.append((f"gpus[{j}].uuid", f"{uuid!r} is not a GPU UUID as `nvidia-smi -L` prints it "
                                           "(GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"))
        if bus is not None and normalize_bus_id(bus) is None:
            out.append((f"gpus[{j}].pci_bus_id", f"{bus!r} is not a PCI bus id such as 00000000:01:00.0 "
                                                 "(`nvidia-smi --query-gpu=pci.bus_id --format=csv`)"))
        for key, value in (("uuid", str(uuid).lower() if uuid else None), ("pci_bus_id", normalize_bus_id(bus))):
            if value is None:
                continue
            if value in seen:
                out.append((f"gpus[{j}].{key}", f"{value} is also gpus[{seen[value]}]'s {key}: one card, listed twice"))
            seen[value] = j
        if len(cards) > 1 and not (uuid or bus):
            out.append((f"gpus[{j}]", f"this host has {len(cards)} cards: give each a uuid or pci_bus_id so engines "
                                      "are pinned by identity, not by inventory order"))
    if any(isinstance(g, Mapping) and g.get("unified") is True for g in cards) and len(cards) > 1:
        out.append(("gpus", "a unified-memory GPU (unified: true) shares the host's RAM: list it as the host's only card"))
    return out


def engine_cards(engine: Mapping[str, Any], gpus: Any) -> tuple[list[int], str | None]:
    """Indices (into ``gpus``) of the cards ``engine`` runs on, or a problem with ``engines[i].gpus``."""
    cards = gpus if isinstance(gpus, (list, tuple)) else []
    refs = engine.get("gpus")
    if refs is None:
        if len(cards) > 1:
            return [], (f"is required on a host with {len(cards)} cards: name the card(s) this engine runs on by "
                        "uuid, pci_bus_id or unique name")
        return list(range(len(cards))), None
    if not isinstance(refs, (list, tuple)) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        return [], f"must be a non-empty list of card references (uuid, pci_bus_id or name), got {refs!r}"
    if not cards:
        return [], f"names {list(refs)} but the host lists no cards (gpus: [])"
    picked: list[int] = []
    for ref in refs:
        hits = [j for j, g in enumerate(cards) if isinstance(g, Mapping) and (
            (g.get("uuid") and str(g["uuid"]).lower() == ref.strip().lower())
            or (normalize_bus_id(ref) is not None and normalize_bus_id(g.get("pci_bus_id")) == normalize_bus_id(ref))
            or g.get("name") == ref)]
        if not hits:
            known = [g.get("uuid") or g.get("pci_bus_id") or g.get("name") for g in _cards(cards)]
            return [], f"{ref!r} matches none of the host's cards ({', '.join(map(str, known))})"
        if len(hits) > 1:
            return [], f"{ref!r} matches {len(hits)} cards: name the card by a uuid or pci_bus_id only it has"
        if hits[0] in picked:
            return [], f"names card {ref!r} twice"
        picked.append(hits[0])
    return picked, None


def cuda_visible_devices(indices: list[int], gpus: Any) -> str | None:
    """CUDA_VISIBLE_DEVICES for the cards ``indices`` of ``gpus``: their UUIDs when all have one, else their indices
    in PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID) when every card of the host has a pci_bus_id; None otherwise."""
    cards = list(gpus) if isinstance(gpus, (list, tuple)) else []
    if all(cards[j].get("uuid") for j in indices):
        return ",".join(str(cards[j]["uuid"]) for j in indices)
    if len(cards) == 1:
        return "0"
    buses = [normalize_bus_id(c.get("pci_bus_id")) for c in cards]
    if None in buses:
        return None
    order = sorted(buses)
    return ",".join(str(order.index(buses[j])) for j in sorted(indices, key=lambda j: buses[j]))


def cuda_env(engines: Any, gpus: Any) -> dict[str, str]:
    """Filter ``homelab_cuda_env``: the environment pinning one engine (a mapping) or one server shared by several
    engines (a list: the union of their cards) to its cards. Empty on a host without cards."""
    cards = gpus if isinstance(gpus, (list, tuple)) else []
    if not cards:
        return {}
    entries = [engines] if isinstance(engines, Mapping) else [e for e in (engines or []) if isinstance(e, Mapping)]
    picked: list[int] = []
    for e in entries:
        idx, problem = engine_cards(e, cards)
        if problem:
            raise ValueError(f"engine {e.get('route')!r}: gpus: {problem}")
        picked += [j for j in idx if j not in picked]
    if not picked:
        return {}
    visible = cuda_visible_devices(sorted(picked), cards)
    if visible is None:
        raise ValueError("cannot pin by identity: give every card of the host a uuid or pci_bus_id")
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": visible}


def parallel_problem(engine: Mapping[str, Any], n_cards: int) -> str | None:
    """vLLM: tensor_parallel_size x pipeline_parallel_size must use exactly the cards the engine names."""
    args = engine.get("args") if isinstance(engine.get("args"), Mapping) else {}
    tp, pp = args.get("tensor_parallel_size"), args.get("pipeline_parallel_size", 1)
    if tp is None:
        return None
    if not (isinstance(tp, int) and isinstance(pp, int) and tp >= 1 and pp >= 1):
        return "tensor_parallel_size and pipeline_parallel_size must be integers >= 1"
    if tp * pp != n_cards:
        return (f"tensor_parallel_size {tp} x pipeline_parallel_size {pp} = {tp * pp} GPUs, but the engine names "
                f"{n_cards} card(s) in engines[].gpus (tensor parallelism runs across exactly the cards named)")
    return None


def gib(x: float) -> str:
    return f"{x:.1f} GiB"


def fit_problems(engines: list, gpus: Any, memory, settings: Mapping[str, Any]) -> list[Problem]:
    """Per-card memory arithmetic. ``memory(engine)`` -> {weights_gib, kv_gib, overhead_gib, total_gib} or None
    when the engine's size fields are unusable (reported elsewhere)."""
    out: list[Problem] = []
    cards = list(gpus) if isinstance(gpus, (list, tuple)) else []
    if not cards or not all(isinstance(g, Mapping) and _num(g.get("vram_gib")) and g["vram_gib"] > 0 for g in cards):
        return out
    claims: dict[int, list[tuple[str, float]]] = {j: [] for j in range(len(cards))}
    shared: dict[int, list[tuple[str, float]]] = {j: [] for j in range(len(cards))}  # engines without a fraction
    for i, e in enumerate(engines):
        if not isinstance(e, Mapping):
            continue
        idx, problem = engine_cards(e, cards)
        if problem:
            out.append((f"engines[{i}].gpus", problem))
            continue
        if idx and cuda_visible_devices(idx, cards) is None:
            out.append((f"engines[{i}].gpus", "cannot be pinned by identity: give the cards it names a uuid each, or "
                                              "every card of the host a pci_bus_id"))
        if e.get("runtime") == "vllm":
            pp = parallel_problem(e, len(idx))
            if pp:
                out.append((f"engines[{i}].args.tensor_parallel_size", pp))
        mem = memory(e)
        util = e.get("gpu_memory_utilization")
        route = e.get("route", i)
        if mem is None or not idx:
            continue
        smallest = min(float(cards[j]["vram_gib"]) for j in idx)
        on = " + ".join(card_label(cards[j], j) for j in idx)
        if _num(util) and 0 < util <= 1:
            budget = len(idx) * smallest * float(util)
            for j in idx:
                claims[j].append((str(route), float(util)))
            sizes = ", ".join(f"{cards[j].get('name', 'gpu')} {cards[j]['vram_gib']:g} GiB" for j in idx)
            arithmetic = f"{len(idx)} cards x min({sizes}) x {float(util):g}" if len(idx) > 1 \
                else f"{sizes} x {float(util):g}"
            kv_src = "kv_gib" if e.get("kv_gib") is not None else \
                f"context {e.get('context')} x {settings.get('kv_gib_per_1k_tokens')} GiB/1K tokens"
            if mem["total_gib"] > budget + 1e-9:
                out.append((f"engines[{i}].gpu_memory_utilization",
                            f"engine {route!r} does not fit on {on}: needs about {gib(mem['total_gib'])} "
                            f"(weights {e['params_b']}B x {e['weight_bits']} bit = {gib(mem['weights_gib'])}, "
                            f"KV {gib(mem['kv_gib'])} from {kv_src}, overhead {gib(mem['overhead_gib'])}) but gets {gib(budget)} "
                            f"({arithmetic})"))
        else:
            for j in idx:
                shared[j].append((str(route), mem["total_gib"] / len(idx)))
    reserve = float(settings.get("unified_reserve_gib", 8.0))
    for j, card in enumerate(cards):
        vram = float(card["vram_gib"])
        total = sum(u for _, u in claims[j])
        listing = ", ".join(f"{r}={u:g}" for r, u in claims[j])
        if len(claims[j]) > 1 and total > 1.0 + 1e-9:
            out.append((f"gpus[{j}]", f"engines on {card_label(card, j)} claim {total:.2f} of its memory ({listing}); "
                                      "the sum per card must be <= 1"))
        if card.get("unified") is True and claims[j] and vram * total > vram - reserve + 1e-9:
            out.append((f"gpus[{j}]", f"unified memory: engines claim {gib(vram * total)} of {gib(vram)} "
                                      f"({listing}), leaving less than the {gib(reserve)} reserved for the OS "
                                      "(validate_inventory_unified_reserve_gib)"))
        if shared[j]:
            free = vram * max(0.0, 1.0 - total) - (reserve if card.get("unified") is True else 0.0)
            need = sum(n for _, n in shared[j])
            if need > free + 1e-9:
                what = " + ".join(f"{r} {gib(n)}" for r, n in shared[j])
                out.append((f"gpus[{j}]", f"engines without a fixed share on {card_label(card, j)} need {gib(need)} "
                                          f"({what}) but {gib(free)} is left ({vram:g} GiB x (1 - {total:g} claimed)"
                                          f"{f' - {reserve:g} GiB OS reserve' if card.get('unified') is True else ''})"))
    return out


# ------------------------------------------------------------------------------------------------
# the driver's verification: declared cards against `nvidia-smi --query-gpu=uuid,pci.bus_id,name,memory.total
# --format=csv,noheader,nounits` (one line per GPU). nvidia-smi prints "[N/A]" (or "[Not Supported]") for a field
# the GPU does not report; on unified-memory GPUs (DGX Spark / GB10) memory.total is such a field.

SMI_QUERY = "--query-gpu=uuid,pci.bus_id,name,memory.total"


def parse_smi(lines: Any) -> list[dict[str, Any]]:
    out = []
    for line in lines or []:
        parts = [p.strip() for p in str(line).split(",")]
        if len(parts) < 4 or not parts[0]:
            continue
        mem = parts[-1]
        out.append({"uuid": parts[0], "bus": normalize_bus_id(parts[1]), "name": ", ".join(parts[2:-1]),
                    "mib": float(mem) if re.fullmatch(r"\d+(\.\d+)?", mem) else None, "raw_mem": mem})
    return out


def gpu_match_problems(expected: Any, smi_lines: Any, tolerance: Any = 0.1, memtotal_mb: Any = None) -> list[str]:
    """Filter ``homelab_gpu_match``: what does not hold between the declared cards and what nvidia-smi reports.
    Cards are matched by uuid, else pci_bus_id, else name (the declared name inside the reported one), else
    memory - never by position, so inventory order does not matter."""
    cards, found = _cards(expected), parse_smi(smi_lines)
    tol = float(tolerance or 0)
    problems: list[str] = []
    if len(cards) != len(found):
        problems.append(f"{len(cards)} GPU(s) declared but nvidia-smi reports {len(found)}: "
                        f"{[f['name'] + ' ' + str(f['bus']) for f in found]}")
    free = list(range(len(found)))
    pairs: list[tuple[int, int]] = []

    def take(j: int, pred) -> bool:
        hit = next((k for k in free if pred(found[k])), None)
        if hit is None:
            return False
        free.remove(hit)
        pairs.append((j, hit))
        return True

    pending = []
    for j, c in enumerate(cards):
        if c.get("uuid"):
            if not take(j, lambda f, c=c: f["uuid"].lower() == str(c["uuid"]).lower()):
                problems.append(f"{card_label(c, j)}: no GPU with uuid {c['uuid']} (nvidia-smi -L lists them)")
        elif c.get("pci_bus_id"):
            if not take(j, lambda f, c=c: f["bus"] == normalize_bus_id(c["pci_bus_id"])):
                problems.append(f"{card_label(c, j)}: no GPU at PCI bus id {c['pci_bus_id']}")
        else:
            pending.append(j)
    for j in list(pending):
        name = str(cards[j].get("name", "")).lower()
        if name and take(j, lambda f, name=name: name in f["name"].lower()):
            pending.remove(j)
    for j in sorted(pending, key=lambda j: -float(cards[j].get("vram_gib") or 0)):
        if not take(j, lambda f: True):
            problems.append(f"{card_label(cards[j], j)}: no reported GPU left to match it")
    for j, k in pairs:
        c, f = cards[j], found[k]
        want = float(c.get("vram_gib") or 0) * 1024 * (1 - tol)
        if f["mib"] is None:
            if c.get("unified") is not True:
                problems.append(f"{card_label(c, j)}: nvidia-smi reports memory {f['raw_mem']} for {f['name']}: declare "
                                "unified: true if it shares the host's RAM (DGX Spark), else the driver is not healthy")
            elif memtotal_mb not in (None, "") and float(memtotal_mb) < want:
                problems.append(f"{card_label(c, j)}: unified memory declared {c.get('vram_gib')} GiB but the host has "
                                f"{float(memtotal_mb):.0f} MiB of RAM")
        elif f["mib"] < want:
            problems.append(f"{card_label(c, j)}: declared {c.get('vram_gib')} GiB but nvidia-smi reports {f['name']} "
                            f"with {f['mib']:.0f} MiB")
    return problems


class FilterModule:
    """GPU card filters."""

    def filters(self) -> dict[str, Any]:
        return {"homelab_cuda_env": cuda_env, "homelab_gpu_match": gpu_match_problems}
