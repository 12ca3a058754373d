"""Fixtures shared by every test layer."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_IMAGE = "localhost/homelab-debian12:latest"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def test_image() -> str:
    """The systemd test image, built on first use (idempotent, cached, flock'd)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make deps` (or .ci/run) first")
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "molecule" / "_shared" / "containers.conf"))
    subprocess.run([str(REPO / "molecule" / "_shared" / "build-image.sh")], check=True, env=env)
    return TEST_IMAGE
