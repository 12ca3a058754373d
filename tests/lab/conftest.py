"""Fixtures for the end-to-end lab test: bring the lab up (or reuse it) and talk to it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _load_driver():
    """tests/lab/lab.py (the `make lab` driver), under a name no other test dir can shadow."""
    import importlib.util
    if "homelab_labctl" in sys.modules:
        return sys.modules["homelab_labctl"]
    spec = importlib.util.spec_from_file_location("homelab_labctl", HERE / "lab.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["homelab_labctl"] = mod
    spec.loader.exec_module(mod)
    return mod


labmod = _load_driver()

LAB = [sys.executable, str(HERE / "lab.py")]


def _run_lab(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([*LAB, *args], cwd=labmod.REPO, text=True, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope="session")
def lab():
    """The running lab. Reuses a lab that `make lab` left up (and leaves it up); otherwise brings
    one up and removes it at the end, unless LAB_KEEP=1."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: the lab needs it")
    os.environ.setdefault("CONTAINERS_CONF", str(labmod.REPO / "molecule" / "_shared" / "containers.conf"))
    reused = _run_lab("status", timeout=60).returncode == 0
    info = {"reused": reused, "up_output": ""}
    if not reused:
        t = time.monotonic()
        proc = _run_lab("up", "--quiet", timeout=3600)
        info["up_output"] = proc.stdout
        info["up_seconds"] = time.monotonic() - t
        if proc.returncode != 0:
            pytest.fail("`lab.py up` failed:\n" + proc.stdout[-6000:])
    lab = labmod.Lab()
    info["lab"] = lab
    info["key"] = (labmod.STATE / "api-key").read_text().strip()
    info["ca"] = labmod.ca_path()
    _STATE["owned"] = not reused and os.environ.get("LAB_KEEP") != "1"
    yield info
    _take_down()


# The lab fixture is session-scoped, but nothing after the lab tests needs the lab: take it down as
# soon as the last lab test has run, so its containers do not compete with the Molecule scenarios
# that follow on the same worker (make test runs on two pytest-xdist workers).
_STATE = {"owned": False}


def _take_down() -> None:
    if _STATE.pop("owned", False):
        proc = _run_lab("down", timeout=1200)
        if proc.returncode != 0:      # the tests' results stand; a lab left up is said, not hidden
            warnings.warn(f"`lab.py down` failed ({proc.returncode}); run `make lab-down`:\n{proc.stdout[-3000:]}")


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or HERE not in Path(str(nextitem.fspath)).resolve().parents:
        _take_down()


def trust(lab):
    """TLS context trusting only Caddy's internal root CA (fetched by `make lab`)."""
    import ssl
    return ssl.create_default_context(cafile=str(lab["ca"]))


@pytest.fixture(scope="session")
def http(lab):
    import httpx
    with httpx.Client(base_url=lab["lab"].endpoint.rsplit("/v1", 1)[0], verify=trust(lab),
                      timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def client(lab):
    """The official openai client, through Caddy's TLS (trusting only Caddy's root CA)."""
    import httpx
    import openai
    http_client = httpx.Client(verify=trust(lab), timeout=60)
    yield openai.OpenAI(base_url=lab["lab"].endpoint, api_key=lab["key"], http_client=http_client,
                        max_retries=0, timeout=60)
    http_client.close()
