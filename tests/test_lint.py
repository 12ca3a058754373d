"""Lint is part of the tests: `yamllint -s .` and `ansible-lint --profile production` are clean on the whole
repository (.yamllint and .ansible-lint at the root; ansible-lint runs offline, with the collections of the
`ansible` pip package). `make lint` runs the same two commands."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*argv: str, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", PY_COLORS="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=timeout)


@pytest.mark.parametrize("config", [".yamllint", ".ansible-lint"])
def test_lint_configuration_is_committed(config):
    assert (REPO / config).is_file(), f"{config} is missing at the repository root"


def test_yamllint_strict_is_clean():
    res = _run("yamllint", "-s", "-f", "parsable", ".", timeout=300)
    assert res.returncode == 0, f"yamllint -s . found problems:\n{res.stdout}{res.stderr}"


@pytest.mark.timeout(900)
def test_ansible_lint_production_profile_is_clean():
    res = _run("ansible-lint", "--profile", "production", "--offline", "-f", "pep8", "--nocolor", timeout=900)
    assert res.returncode == 0, f"ansible-lint --profile production found problems:\n{res.stdout}{res.stderr}"
    assert "Profile 'production' was required, and it passed" in res.stdout + res.stderr, res.stdout + res.stderr
