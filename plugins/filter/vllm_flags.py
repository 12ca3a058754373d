"""What each pinned vLLM version's `vllm serve` accepts: one table per version, used by inventory validation, the
vllm role's preflight (through homelab_rules.py) and the vLLM test double (tests/doubles/fake_engine.py), so all
three refuse the same flags and values. Standard library only (the test double imports it inside its wheel).

A flag's spec is its value kind: "bool" (vLLM >= 0.10 gives every boolean --flag and --no-flag), "int", "float",
"str", "json" (a mapping or list, passed as compact JSON), or a tuple of the accepted values (argparse choices).
Keys are the inventory's `args` keys (the flag without '--', '-' written as '_').

Adding a version: copy the table, change what its release changed, cite the files and tag you read.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_V0110_SOURCE = (
    "vLLM v0.11.0 (git tag v0.11.0): vllm/engine/arg_utils.py EngineArgs.add_cli_args (engine flags), "
    "vllm/entrypoints/openai/cli_args.py FrontendArgs (server flags), vllm/config/cache.py CacheDType, "
    "vllm/config/model.py ModelDType/TokenizerMode/RunnerOption, vllm/config/load.py load formats, "
    "vllm/model_executor/layers/quantization/__init__.py QuantizationMethods, vllm/config/speculative.py "
    "SpeculativeMethod; rendered at https://docs.vllm.ai/en/v0.11.0/cli/serve.html"
)

_QUANT_0110 = (
    "awq", "deepspeedfp", "tpu_int8", "fp8", "ptpc_fp8", "fbgemm_fp8", "fp_quant", "modelopt", "modelopt_fp4",
    "bitblas", "gguf", "gptq_marlin_24", "gptq_marlin", "gptq_bitblas", "awq_marlin", "gptq", "compressed-tensors",
    "bitsandbytes", "hqq", "experts_int8", "ipex", "quark", "moe_wna16", "torchao", "auto-round", "rtn", "inc",
    "mxfp4", "petit_nvfp4",
)

_FLAGS_0110: dict[str, Any] = {
    # server (FrontendArgs)
    "host": "str", "port": "int", "uds": "str", "uvicorn_log_level": ("critical", "error", "warning", "info", "debug",
                                                                         "trace"),
    "disable_uvicorn_access_log": "bool", "allow_credentials": "bool", "allowed_origins": "json",
    "allowed_methods": "json", "allowed_headers": "json", "api_key": "str", "lora_modules": "str",
    "chat_template": "str", "chat_template_content_format": ("auto", "string", "openai"),
    "trust_request_chat_template": "bool", "response_role": "str", "ssl_keyfile": "str", "ssl_certfile": "str",
    "ssl_ca_certs": "str", "enable_ssl_refresh": "bool", "ssl_cert_reqs": "int", "root_path": "str",
    "middleware": "str", "return_tokens_as_token_ids": "bool", "disable_frontend_multiprocessing": "bool",
    "enable_request_id_headers": "bool", "enable_auto_tool_choice": "bool",
    "exclude_tools_when_tool_choice_none": "bool", "tool_call_parser": "str", "tool_parser_plugin": "str",
    "tool_server": "str", "log_config_file": "str", "max_log_len": "int", "disable_fastapi_docs": "bool",
    "enable_prompt_tokens_details": "bool", "enable_server_load_tracking": "bool",
    "enable_force_include_usage": "bool", "enable_tokenizer_info_endpoint": "bool", "enable_log_outputs": "bool",
    "h11_max_incomplete_event_size": "int", "h11_max_header_count": "int", "log_error_stack": "bool",
    "api_server_count": "int", "headless": "bool", "enable_log_requests": "bool", "disable_log_requests": "bool",
    "disable_log_stats": "bool",
    # model (ModelConfig)
    "runner": ("auto", "generate", "pooling", "draft"), "convert": ("auto", "none", "embed", "classify", "reward"),
    "tokenizer": "str", "tokenizer_mode": ("auto", "slow", "mistral", "custom"), "trust_remote_code": "bool",
    "dtype": ("auto", "half", "float16", "bfloat16", "float", "float32"), "seed": "int", "hf_config_path": "str",
    "allowed_local_media_path": "str", "revision": "str", "code_revision": "str", "rope_scaling": "json",
    "rope_theta": "float", "tokenizer_revision": "str", "max_model_len": "int", "quantization": _QUANT_0110,
    "enforce_eager": "bool", "max_logprobs": "int",
    "logprobs_mode": ("raw_logprobs", "raw_logits", "processed_logprobs", "processed_logits"),
    "disable_sliding_window": "bool", "disable_cascade_attn": "bool", "skip_tokenizer_init": "bool",
    "enable_prompt_embeds": "bool", "served_model_name": "str", "config_format": ("auto", "hf", "mistral"),
    "hf_token": "str", "hf_overrides": "json", "pooler_config": "json", "logits_processor_pattern": "str",
    "generation_config": "str", "override_generation_config": "json", "enable_sleep_mode": "bool",
    "model_impl": ("auto", "vllm", "transformers", "terratorch"), "override_attention_dtype": "str",
    "logits_processors": "json", "io_processor_plugin": "str",
    # load (LoadConfig)
    "load_format": ("auto", "pt", "safetensors", "npcache", "dummy", "tensorizer", "sharded_state", "gguf",
                    "bitsandbytes", "mistral", "runai_streamer", "runai_streamer_sharded", "fastsafetensors"),
    "download_dir": "str", "safetensors_load_strategy": ("lazy", "eager"), "model_loader_extra_config": "json",
    "ignore_patterns": "json", "use_tqdm_on_load": "bool", "pt_load_map_location": "str",
    # structured outputs / reasoning
    "reasoning_parser": "str", "structured_outputs_config": "json",
    # parallelism (ParallelConfig)
    "distributed_executor_backend": ("ray", "mp", "uni", "external_launcher"), "pipeline_parallel_size": "int",
    "tensor_parallel_size": "int", "decode_context_parallel_size": "int", "data_parallel_size": "int",
    "data_parallel_rank": "int", "data_parallel_start_rank": "int", "data_parallel_size_local": "int",
    "data_parallel_address": "str", "data_parallel_rpc_port": "int", "data_parallel_backend": ("mp", "ray"),
    "data_parallel_hybrid_lb": "bool", "enable_expert_parallel": "bool", "enable_eplb": "bool",
    "eplb_config": "json", "max_parallel_loading_workers": "int", "ray_workers_use_nsight": "bool",
    "disable_custom_all_reduce": "bool", "worker_cls": "str", "worker_extension_cls": "str",
    "enable_multimodal_encoder_data_parallel": "bool",
    # KV cache (CacheConfig)
    "block_size": (1, 8, 16, 32, 64, 128), "gpu_memory_utilization": "float", "kv_cache_memory_bytes": "int",
    "swap_space": "float", "kv_cache_dtype": ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"),
    "num_gpu_blocks_override": "int", "enable_prefix_caching": "bool",
    "prefix_caching_hash_algo": ("sha256", "sha256_cbor"), "cpu_offload_gb": "float", "calculate_kv_scales": "bool",
    "kv_sharing_fast_prefill": "bool", "mamba_cache_dtype": ("auto", "float32"),
    "mamba_ssm_cache_dtype": ("auto", "float32"),
    # multimodal (MultiModalConfig)
    "limit_mm_per_prompt": "json", "media_io_kwargs": "json", "mm_processor_kwargs": "json",
    "mm_processor_cache_gb": "float", "mm_processor_cache_type": ("lru", "shm"), "mm_encoder_tp_mode": ("weights", "data"),
    "interleave_mm_strings": "bool", "skip_mm_profiling": "bool", "video_pruning_rate": "float",
    # LoRA
    "enable_lora": "bool", "max_loras": "int", "max_lora_rank": "int", "max_cpu_loras": "int",
    "fully_sharded_loras": "bool", "lora_dtype": ("auto", "float16", "bfloat16"),
    # scheduler (SchedulerConfig)
    "max_num_batched_tokens": "int", "max_num_seqs": "int", "max_num_partial_prefills": "int",
    "max_long_partial_prefills": "int", "long_prefill_token_threshold": "int", "num_lookahead_slots": "int",
    "scheduling_policy": ("fcfs", "priority"), "enable_chunked_prefill": "bool", "disable_chunked_mm_input": "bool",
    "scheduler_cls": "str", "disable_hybrid_kv_cache_manager": "bool", "async_scheduling": "bool",
    "cuda_graph_sizes": "json",
    # speculative decoding, observability, compilation, KV transfer
    "speculative_config": "json", "show_hidden_metrics_for_version": "str", "otlp_traces_endpoint": "str",
    "collect_detailed_traces": "str", "compilation_config": "json", "kv_transfer_config": "json",
    "kv_events_config": "json", "additional_config": "json",
}

# JSON flags whose keys/values the pinned version also checks at start-up (SpeculativeConfig.method).
_JSON_CHOICES_0110 = {
    ("speculative_config", "method"): ("ngram", "eagle", "eagle3", "medusa", "mlp_speculator", "draft_model",
                                       "deepseek_mtp", "ernie_mtp", "qwen3_next_mtp", "mimo_mtp",
                                       "longcat_flash_mtp", "mtp"),
}

VLLM_FLAGS: dict[str, dict[str, Any]] = {
    "0.11.0": {"source": _V0110_SOURCE, "flags": _FLAGS_0110, "json_choices": _JSON_CHOICES_0110},
}

# args keys the vllm role sets itself from other inventory fields: refused inside args, with the field to use.
ROLE_SET = {
    "host": "the engine binds vllm_listen_address (default: the host's homelab_address)",
    "port": "set engines[].port",
    "served_model_name": "set engines[].served_name",
    "max_model_len": "set engines[].context",
    "gpu_memory_utilization": "set engines[].gpu_memory_utilization",
    "max_num_seqs": "set engines[].max_concurrency",
    "api_key": "the key comes from vault_engine_api_keys (VLLM_API_KEY in the 0600 environment file, never argv)",
}
# args keys the vllm role consumes without passing them as flags.
ROLE_ARGS = {"extra"}


def _kind_ok(kind: Any, value: Any) -> bool:
    if isinstance(kind, tuple):
        return value in kind or str(value) in [str(k) for k in kind]
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "json":
        return isinstance(value, (Mapping, list, tuple, str))
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _describe(kind: Any) -> str:
    if isinstance(kind, tuple):
        return "one of " + ", ".join(map(str, kind))
    return {"bool": "true or false", "int": "an integer", "float": "a number", "json": "a mapping or list",
            "str": "a string"}[kind]


def flag_problems(args: Any, version: str) -> list[tuple[str, str]]:
    """(args key, reason) for every flag or value the pinned vLLM ``version`` does not accept."""
    if not isinstance(args, Mapping):
        return []
    table = VLLM_FLAGS.get(str(version))
    if table is None:
        return [("", f"no flag table for vLLM {version} in plugins/filter/vllm_flags.py (known: "
                     f"{', '.join(VLLM_FLAGS)}): add one, citing that release's sources")]
    flags, out = table["flags"], []
    for key in sorted(args):
        value = args[key]
        if key in ROLE_ARGS:
            continue
        if key in ROLE_SET:
            out.append((key, f"is set by the role, not in args: {ROLE_SET[key]}"))
        elif key not in flags:
            out.append((key, f"--{key.replace('_', '-')} is not a flag of vLLM {version} "
                             f"(table and sources: plugins/filter/vllm_flags.py)"))
        elif value is not None and not _kind_ok(flags[key], value):
            out.append((key, f"--{key.replace('_', '-')} {value!r}: vLLM {version} accepts {_describe(flags[key])}"))
        elif isinstance(value, Mapping):
            for (flag, sub), choices in table.get("json_choices", {}).items():
                if flag == key and sub in value and value[sub] not in choices:
                    out.append((key, f"--{key.replace('_', '-')} {sub} {value[sub]!r}: vLLM {version} accepts "
                                     f"{', '.join(choices)} (leave the flag out to turn the feature off)"))
    extra = args.get("extra") or []
    for token in extra if isinstance(extra, (list, tuple)) else []:
        name = str(token).split("=", 1)[0]
        if name.startswith("--"):
            key = name[2:].replace("-", "_")
            key = key[3:] if key.startswith("no_") and flags.get(key[3:]) == "bool" else key
            if key in ROLE_SET:
                out.append(("extra", f"{name} is set by the role, not in args: {ROLE_SET[key]}"))
            elif key not in flags:
                out.append(("extra", f"{name} is not a flag of vLLM {version} (plugins/filter/vllm_flags.py)"))
    return out


class FilterModule:
    """No filters: imported by homelab_rules.py and the vLLM test double."""

    def filters(self) -> dict[str, Any]:
        return {}
