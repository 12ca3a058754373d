"""nvidia_driver's verification (tasks/verify.yml) run for real on the control node against the nvidia-smi and CUDA
TEST DOUBLES (tests/doubles/fake-nvidia-smi, fake-cuda-init): GPUs matched by identity whatever the inventory
order, unified memory's "[N/A]" accepted only on `unified: true` cards, and a driver whose nvidia-smi answers while
CUDA does not initialise is refused. Pure matching rules: plugins/filter/homelab_gpus.py (gpu_match_problems)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOUBLES = REPO / "tests" / "doubles"
U4090 = "GPU-3c0a8f52-6e1d-4b7a-9f20-1d5e8c7b6a41"
U6000 = "GPU-5f1c2a9e-0d3b-4c7e-9a61-2b8d4e6f7a10"
WORKSTATION_SMI = (f"{U4090}, 00000000:01:00.0, NVIDIA GeForce RTX 4090 Laptop GPU, 16376\n"
                   f"{U6000}, 00000000:0B:00.0, NVIDIA RTX PRO 6000 Blackwell Workstation Edition, 97887\n")
SPARK_SMI = "GPU-7a3e0c11-9b2d-4f6e-8c5a-0e1f2d3c4b5a, 0000000F:01:00.0, NVIDIA GB10, [N/A]\n"


def verify(tmp_path: Path, gpus: list, smi: str, poisoned: bool = False) -> subprocess.CompletedProcess:
    csv = tmp_path / "gpus.csv"
    csv.write_text(smi)
    poison = tmp_path / "poison"
    if poisoned:
        poison.write_text("")
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "tasks": [{"ansible.builtin.include_role": {"name": "nvidia_driver", "tasks_from": "verify"}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    extra = {"gpus": gpus, "nvidia_driver_smi_command": str(DOUBLES / "fake-nvidia-smi"),
             "nvidia_driver_cuda_check_command": [str(DOUBLES / "fake-cuda-init")],
             "ansible_python_interpreter": sys.executable}
    env = dict(os.environ, FAKE_NVIDIA_SMI_CSV=str(csv), FAKE_CUDA_POISON=str(poison), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
                           "-e", json.dumps(extra), str(tmp_path / "play.yml")],
                          cwd=REPO, env=env, text=True, capture_output=True, timeout=180)


def test_workstation_cards_listed_out_of_order_verify(tmp_path):
    gpus = [{"name": "RTX PRO 6000 Blackwell", "vram_gib": 96, "uuid": U6000},
            {"name": "RTX 4090 Laptop GPU", "vram_gib": 16, "pci_bus_id": "0000:01:00.0"}]
    run = verify(tmp_path, gpus, WORKSTATION_SMI)
    assert run.returncode == 0, run.stdout[-3000:]


def test_name_only_cards_match_by_name_not_position(tmp_path):
    gpus = [{"name": "RTX PRO 6000", "vram_gib": 96}, {"name": "RTX 4090", "vram_gib": 16}]
    assert verify(tmp_path, gpus, WORKSTATION_SMI).returncode == 0


def test_spark_unified_memory_na_is_accepted(tmp_path):
    run = verify(tmp_path, [{"name": "NVIDIA GB10 (DGX Spark)", "vram_gib": 128, "unified": True}], SPARK_SMI)
    assert run.returncode == 0, run.stdout[-3000:]


@pytest.mark.parametrize("gpus,smi,poisoned,message", [
    ([{"name": "GB10", "vram_gib": 128}], SPARK_SMI, False, "memory [N/A]"),
    ([{"name": "RTX 4090", "vram_gib": 24, "uuid": U4090}, {"name": "RTX PRO 6000", "vram_gib": 96, "uuid": U6000}],
     WORKSTATION_SMI, False, "declared 24 GiB but nvidia-smi reports"),
    ([{"name": "RTX 4090", "vram_gib": 16, "uuid": "GPU-00000000-0000-0000-0000-000000000000"},
      {"name": "RTX PRO 6000", "vram_gib": 96}], WORKSTATION_SMI, False, "no GPU with uuid"),
    ([{"name": "RTX 4090", "vram_gib": 16}], WORKSTATION_SMI, False, "1 GPU(s) declared but nvidia-smi reports 2"),
    ([{"name": "NVIDIA GB10", "vram_gib": 128, "unified": True}], SPARK_SMI, True, "CUDA does not initialise"),
], ids=["na-without-unified", "too-little-memory", "unknown-uuid", "count", "cuda-poisoned"])
def test_wrong_hardware_is_refused(tmp_path, gpus, smi, poisoned, message):
    run = verify(tmp_path, gpus, smi, poisoned)
    assert run.returncode != 0 and message in run.stdout, run.stdout[-3000:]
