"""YAML config files of the two services: plain dicts checked field by field (file + field + reason on error).

Secrets never live in these files: the broker password comes from ``HOMELAB_HA_MQTT_PASSWORD`` and the router key
from ``HOMELAB_HA_ROUTER_KEY`` (the roles write them to a 0600 EnvironmentFile).
"""
from __future__ import annotations

import os
from typing import Any

import yaml

from .mqttlink import BrokerSettings

PASSWORD_ENV = "HOMELAB_HA_MQTT_PASSWORD"
ROUTER_KEY_ENV = "HOMELAB_HA_ROUTER_KEY"


class ConfigError(ValueError):
    pass


def load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping")
    data["_path"] = path
    return data


def get(cfg: dict, field: str, kind: type | tuple, default: Any = ..., check=None, why: str = "") -> Any:
    """cfg[field] (dotted), of type kind; default when absent (absent and no default: error)."""
    node: Any = cfg
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise ConfigError(f"{cfg.get('_path', 'config')}: {field}: required")
            return default
        node = node[part]
    if isinstance(node, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{cfg.get('_path', 'config')}: {field}: must be a number, got {node!r}")
    if not isinstance(node, kind):
        raise ConfigError(f"{cfg.get('_path', 'config')}: {field}: must be {kind}, got {node!r}")
    if check is not None and not check(node):
        raise ConfigError(f"{cfg.get('_path', 'config')}: {field}: {why or 'invalid'} (got {node!r})")
    return node


def broker(cfg: dict, default_client_id: str) -> BrokerSettings:
    return BrokerSettings(
        host=get(cfg, "mqtt.host", str, "127.0.0.1"),
        port=get(cfg, "mqtt.port", int, 1883, lambda p: 0 < p < 65536, "a TCP port"),
        username=get(cfg, "mqtt.username", str, None),
        password=os.environ.get(PASSWORD_ENV),
        client_id=get(cfg, "mqtt.client_id", str, default_client_id),
        tls_ca=get(cfg, "mqtt.tls_ca", str, None),
    )
