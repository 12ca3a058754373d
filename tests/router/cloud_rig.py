"""The cloud-route rig: the fake providers (tests/doubles) and a router config with local and cloud routes.

No test reaches a real provider: every cloud route points at a fake on 127.0.0.1."""
from __future__ import annotations

import os
import sys

DOUBLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "doubles")
if DOUBLES not in sys.path:
    sys.path.insert(0, DOUBLES)

from fake_anthropic import FakeAnthropic  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

ANTHROPIC_KEY = "sk-ant-test-not-a-real-key"
OPENAI_KEY = "sk-test-not-a-real-key"
PNG = "data:image/png;base64,iVBORw0KGgo="


def cloud_config(local_url: str, claude_url: str, gpt_url: str, tmp_path, **extra) -> dict:
    """Two local routes (mouth -> brain) and two cloud routes (claude: anthropic, gpt: openai)."""
    local = {"connect_timeout_s": 2, "first_byte_timeout_s": 5, "queue_timeout_s": 2, "max_concurrency": 16}
    cloud = {"connect_timeout_s": 2, "first_byte_timeout_s": 2, "first_token_timeout_s": 2, "total_timeout_s": 10,
             "max_concurrency": 16, "terminal": True}
    cfg = {
        "admin_key_env": "TEST_ROUTER_ADMIN_KEY_UNSET",
        "log_dir": str(tmp_path / "logs"),
        "store_path": str(tmp_path / "state" / "router.sqlite3"),
        "health": {"interval_s": 3600, "timeout_s": 1},
        "routes": {
            "mouth": {"url": local_url, "model": "gemma-4-31b", "aliases": ["homelab/chat"], "failover": "brain",
                      **local},
            "brain": {"url": local_url, "model": "qwen3.6-35b-a3b-fp8", "vision": True, "terminal": True, **local},
            "claude": {"kind": "cloud", "provider": "anthropic", "url": claude_url, "model": "claude-sonnet-4-20250514",
                       "api_key_env": "TEST_ANTHROPIC_KEY", "aliases": ["cloud/claude"], **cloud},
            "gpt": {"kind": "cloud", "provider": "openai", "url": gpt_url, "model": "gpt-4o-mini",
                    "api_key_env": "TEST_OPENAI_KEY", **cloud},
        },
        "buckets": {"vision": {"route": "brain", "keywords": ["photo"]},
                    "general_chat": {"route": "mouth", "keywords": ["hello"]},
                    "legal": {"route": "claude", "keywords": ["contract"]},
                    "unknown": {"route": "brain"}},
        "cloud": {"compare_to": "claude", "budgets": {"default": {"usd_per_month": 5.0}}},
    }
    cfg.update(extra)
    return cfg


def set_keys() -> None:
    os.environ["TEST_ANTHROPIC_KEY"] = ANTHROPIC_KEY
    os.environ["TEST_OPENAI_KEY"] = OPENAI_KEY


__all__ = ["FakeAnthropic", "FakeOpenAI", "cloud_config", "set_keys", "ANTHROPIC_KEY", "OPENAI_KEY", "PNG"]
