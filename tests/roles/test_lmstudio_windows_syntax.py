"""The lmstudio Windows tasks cannot run here (no Windows/WinRM host). This at least parses them
statically with ansible-playbook --syntax-check, which resolves every module name (ansible.windows,
community.windows) against the installed collections."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_windows_tasks_parse(tmp_path):
    play = tmp_path / "win.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.import_tasks: {REPO}/roles/lmstudio/tasks/windows.yml\n")
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_FILTER_PLUGINS=str(REPO / "roles" / "lmstudio" / "filter_plugins"))
    bindir = Path(sys.executable).parent
    p = subprocess.run([str(bindir / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(play)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_gpu_nodes_playbook_parses():
    bindir = Path(sys.executable).parent
    p = subprocess.run([str(bindir / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                        str(REPO / "playbooks" / "gpu_nodes.yml")],
                       capture_output=True, text=True, cwd=REPO,
                       env=dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles")))
    assert p.returncode == 0, p.stdout + p.stderr
