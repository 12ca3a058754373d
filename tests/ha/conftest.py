"""Real pieces for the Home Assistant tests: Debian's mosquitto on a loopback port (password file hashed by
mosquitto_passwd, an ACL), an MQTT subscriber playing Home Assistant (paho-mqtt), and a real homelab-router in front
of the loopback test engines of tests/router."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS / "router"))
sys.path.insert(0, str(TESTS / "doubles"))
sys.path.insert(0, str(HERE))

from tool_engine import ToolEngine  # noqa: E402
from ha_rig import Broker, HASubscriber  # noqa: E402

_spec = importlib.util.spec_from_file_location("router_rig_for_ha", TESTS / "router" / "conftest.py")
router_rig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(router_rig)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


@pytest.fixture
def ha(broker):
    s = HASubscriber(broker)
    yield s
    s.close()


@pytest.fixture(scope="module")
def vision_engines():
    yield from router_rig.engine_rig(ToolEngine)


@pytest.fixture
def vision_router(vision_engines, tmp_path):
    make = router_rig._routers(vision_engines, tmp_path)
    factory = next(make)
    yield factory()
    try:
        next(make)
    except StopIteration:
        pass
