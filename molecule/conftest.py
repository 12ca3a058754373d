"""Shared by every scenario's testinfra tests: run the checks through `podman exec` instead of one
ansible call per command.

Molecule hands testinfra ansible:// hosts; each command through that backend costs an
ansible-playbook start. The containers are local podman containers with the same names,
so the podman backend reaches the very same hosts, much faster.
"""

import shutil

import pytest
import testinfra


@pytest.fixture(scope="module")
def host(_testinfra_host):
    if shutil.which("podman") is None:
        return _testinfra_host
    return testinfra.get_host(f"podman://{_testinfra_host.backend.get_hostname()}")
