"""Fixtures shared by every test layer."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_IMAGE = "localhost/homelab-debian12:latest"
TEST_IMAGE_NOBLE = "localhost/homelab-ubuntu2404:latest"


def build_test_image(suite: str = "bookworm") -> None:
    """Build the systemd test image of a suite (bookworm or noble) when missing (idempotent, cached, flock'd)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make deps` (or .ci/run) first")
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "molecule" / "_shared" / "containers.conf"),
               HOMELAB_IMAGE_SUITE=suite)
    env.pop("HOMELAB_IMAGE", None)
    subprocess.run([str(REPO / "molecule" / "_shared" / "build-image.sh")], check=True, env=env)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def test_image() -> str:
    """The Debian 12 systemd test image, built on first use (idempotent, cached, flock'd)."""
    build_test_image("bookworm")
    return TEST_IMAGE


@pytest.fixture(scope="session")
def test_image_noble() -> str:
    """The Ubuntu 24.04 systemd test image (the GPU nodes' scenarios), built on first use."""
    build_test_image("noble")
    return TEST_IMAGE_NOBLE


# --- scheduling for `make test` (pytest-xdist, --dist loadgroup) --------------------------------
# The whole suite runs on two workers. The lab is one unit of work (its session fixture brings
# the containers up once), so its tests share one xdist group; the longest units go first
# (lab, then Molecule scenarios, then the browser test) so the short API tests fill the tail.
def _rank(item: pytest.Item) -> int:
    path = Path(str(item.fspath)).resolve()
    if (REPO / "tests" / "lab") in path.parents:
        return 0
    if item.get_closest_marker("molecule") is not None:
        return 1
    if item.get_closest_marker("browser") is not None:
        return 2
    return 3


# The lab modules carry `pytest.mark.xdist_group("lab")` in their own pytestmark (xdist reads the mark in
# its collection hook, which runs before this one). pytest is pinned below 9 for loadgroup (pyproject.toml).
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: keeps the file order inside each rank

