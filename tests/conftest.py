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


# --- scheduling for `make test` (pytest-xdist, --dist loadgroup) --------------------------------
# The whole suite runs on two workers. The lab is one unit of work (its session fixture brings
# the containers up once), so its tests share one xdist group; the longest units go first
# (lab, then Molecule scenarios, then the browser test) so the short API tests fill the tail.
_FIRST = ("lab", "molecule", "browser")


def _rank(item: pytest.Item) -> int:
    path = Path(str(item.fspath)).resolve()
    if (REPO / "tests" / "lab") in path.parents:
        return 0
    if item.get_closest_marker("molecule") is not None:
        return 1
    if item.get_closest_marker("browser") is not None:
        return 2
    return 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _rank(item) == 0:
            item.add_marker(pytest.mark.xdist_group("lab"))
    items.sort(key=_rank)  # stable: keeps the file order inside each rank
