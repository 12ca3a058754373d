"""Run every Molecule scenario under molecule/ as one pytest test each.

Each scenario is a full create → converge → idempotence → verify → destroy cycle on podman
systemd containers (see .config/molecule/config.yml). The full Molecule log of each run is
kept under .artifacts/molecule/<scenario>.log; a failure shows its tail.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(
    p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml") if not p.parent.name.startswith("_")
)
ARTIFACTS = REPO / ".artifacts" / "molecule"

pytestmark = [pytest.mark.molecule, pytest.mark.slow]


@pytest.fixture(scope="session")
def molecule_env(test_image: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["CONTAINERS_CONF"] = str(REPO / "molecule" / "_shared" / "containers.conf")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PY_COLORS"] = "0"
    env["NO_COLOR"] = "1"
    return env


def test_scenarios_discovered() -> None:
    # An empty list would make this module pass vacuously.
    assert SCENARIOS, "no Molecule scenarios found under molecule/"


# A scenario takes 1-4 minutes on an idle 2-core machine, far longer under load.
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, molecule_env: dict[str, str], request: pytest.FixtureRequest) -> None:
    # GPU-node scenarios run (some hosts) on Ubuntu 24.04: build that image too when the scenario names it
    if "homelab-ubuntu2404" in (REPO / "molecule" / scenario / "molecule.yml").read_text():
        request.getfixturevalue("test_image_noble")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / f"{scenario}.log"
    with log.open("w") as out:
        proc = subprocess.run(
            ["molecule", "test", "-s", scenario],
            cwd=REPO,
            env=molecule_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=2300,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        pytest.fail(f"molecule test -s {scenario} failed (rc={proc.returncode}); log: {log}\n{tail}")
