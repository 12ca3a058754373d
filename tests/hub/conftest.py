"""Fixtures of the hub tests; the rig itself is in hub_rig.py (a module name no other test directory uses)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hub_rig import Rig  # noqa: E402


@pytest.fixture()
def rig(tmp_path):
    r = Rig(tmp_path)
    r.start_router()
    yield r
    r.close()
