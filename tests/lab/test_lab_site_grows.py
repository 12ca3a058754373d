"""Adding a GPU node exactly as the README says, on the lab: a user's copy of the example inventory gets a
host_vars file and a hosts.yml line, the README's "Adding a GPU node" command runs verbatim (its site, vault and
node name filled in), and the router then answers a request pinned to the new node's route. Afterwards the
lab is put back (container removed, gateway/firewall/Netdata converged on the unchanged example)."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
import yaml

import homelab_labctl as labmod  # tests/lab/lab.py, loaded by conftest.py

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.xdist_group("lab"), pytest.mark.timeout(2400)]

REPO = labmod.REPO
NODE, ROUTE = "ubuntu-3090", "spare"
USER_HOST_VARS = {
    "homelab_address": "10.20.0.15", "homelab_vlan": "ai",
    "gpus": [{"name": "RTX 3090", "vram_gib": 24}],
    "engines": [{"route": ROUTE, "runtime": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct-AWQ",
                 "served_name": "qwen2.5-7b-awq", "params_b": 7.6, "weight_bits": 4, "context": 8192,
                 "gpu_memory_utilization": 0.85, "port": 8000, "max_concurrency": 2, "max_queue": 0,
                 "aliases": ["homelab/spare"], "failover": "brain"}],
}


def readme_command() -> list[str]:
    """The shell command of the README's "Adding a GPU node" section, as argv."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Adding a GPU node", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return shlex.split(block.replace("\\\n", " "))


def user_copy(name: str) -> "labmod.Path":
    """cp -r inventory/example inventory/<name>, then the README's two inventory edits for the new node."""
    home = REPO / "inventory" / name
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(REPO / "inventory" / "example", home)
    (home / "host_vars" / f"{NODE}.yml").write_text("---\n" + yaml.safe_dump(USER_HOST_VARS, sort_keys=False))
    hosts = yaml.safe_load((home / "hosts.yml").read_text())
    groups = hosts["all"]["children"]
    groups["gpu_nodes"]["hosts"][NODE] = None
    groups["netdata"]["hosts"][NODE] = None      # README: "and under netdata when it runs Linux"
    (home / "hosts.yml").write_text("---\n" + yaml.safe_dump(hosts, sort_keys=False))
    return home


def overlay_copy(name: str) -> "labmod.Path":
    """The lab overlay plus the new node's lab differences (address, CPU runtime, tiny model, no GPU)."""
    over = REPO / "inventory" / name
    shutil.rmtree(over, ignore_errors=True)
    shutil.copytree(REPO / "inventory" / "lab", over)
    lab_engine = dict(USER_HOST_VARS["engines"][0], runtime="llama_server", model="homelab-tiny.gguf",
                      params_b=0.0002, weight_bits=32,
                      args={"model_src": "{{ inventory_dir }}/../../.lab/models/homelab-tiny.gguf"})
    (over / "host_vars" / f"{NODE}.yml").write_text("---\n" + yaml.safe_dump(
        {"homelab_address": "172.31.250.37", "gpus": [], "engines": [lab_engine]}, sort_keys=False))
    return over


def converge(argv: list[str]) -> subprocess.CompletedProcess:
    env = labmod.podman_env()
    env["PATH"] = f"{labmod.VENV_BIN}:{env.get('PATH', '')}"
    return subprocess.run(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=1800)


def test_add_a_gpu_node_as_the_readme_says(lab, client):
    home, over = user_copy(".lab-home"), overlay_copy(".lab-overlay")
    grown = labmod.Lab([home, over])
    try:
        assert NODE in grown.groups["gpu_nodes"] and NODE in grown.groups["netdata"]
        labmod.phase_hosts(grown, labmod.SSH_KEY)            # the new machine: one more container
        secrets = labmod.phase_secrets(grown)                 # an engine key for the new route
        argv = readme_command()
        assert argv[:2] == [".venv/bin/ansible-playbook", "-i"] and "--ask-vault-pass" in argv, argv
        i = argv.index("-i")
        argv[i:i + 2] = ["-i", str(home), "-i", str(over)]
        v = argv.index("--ask-vault-pass")
        argv[v:v + 1] = ["-e", f"@{secrets}"]
        argv = [a.replace("new-node", NODE) for a in argv]
        argv[0] = str(labmod.VENV_BIN / "ansible-playbook")
        proc = converge(argv)
        assert proc.returncode == 0, proc.stdout[-6000:]

        raw = client.chat.completions.with_raw_response.create(
            model="homelab/spare", max_tokens=8, messages=[{"role": "user", "content": "hello"}])
        assert raw.headers.get("x-homelab-route") == ROUTE, dict(raw.headers)
        assert raw.parse().choices[0].message.content
    finally:
        labmod.podman("rm", "-f", "-t", "5", grown.container(NODE), check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(over, ignore_errors=True)
        inv = labmod.Lab()
        labmod.phase_secrets(inv)                              # the new route's engine key goes again
        restore = converge([str(labmod.VENV_BIN / "ansible-playbook"), "-i", str(labmod.INVENTORIES[0]),
                            "-i", str(labmod.INVENTORIES[1]), str(REPO / "site.yml"),
                            "-e", f"@{labmod.STATE / 'secrets.yml'}", "--limit", f"{inv.gateway},opnsense",
                            "--tags", "network,gateway,observability"])
        assert restore.returncode == 0, restore.stdout[-4000:]
