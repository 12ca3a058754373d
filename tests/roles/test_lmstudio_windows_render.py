"""LM Studio on Windows, as far as it can be checked without a Windows host: the start script the boot task runs
(rendered from the example's win-5090 entry: slots, bind address, quoting), the slots rule, and the role's
argument specs against the example's variables (ansible-playbook --check: only the spec validation runs)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "lmstudio"
sys.path.insert(0, str(REPO / "plugins" / "filter"))
import homelab_rules as rules  # noqa: E402

_spec = importlib.util.spec_from_file_location("lmstudio_args_render", ROLE / "filter_plugins" / "lmstudio_args.py")
lm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lm)

WIN = yaml.safe_load((REPO / "inventory" / "example" / "host_vars" / "win-5090.yml").read_text())
LMS = r"C:\Users\o'brien\.lmstudio\bin\lms.exe"


def render(engines, **overrides):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), trim_blocks=True,
                             lstrip_blocks=False, undefined=jinja2.StrictUndefined)
    env.filters.update(lm.FilterModule().filters())
    values = dict(ansible_managed="managed", lmstudio_windows_task_name="homelab-lmstudio",
                  lmstudio_windows_user="lmstudio", lmstudio_listen_address=WIN["homelab_address"],
                  lmstudio_windows_lms_path=LMS, lmstudio_windows_daemon_up=True, lmstudio_engines=engines,
                  lmstudio_parallel_flag="--parallel", lmstudio_gpu_offload="max", lmstudio_port=1234,
                  lmstudio_bind_flag="--bind")
    values.update(overrides)
    return env.get_template("lmstudio-start.ps1.j2").render(**values)


def test_start_script_loads_each_engine_with_its_slots_and_binds_the_overlay_address():
    text = render(WIN["engines"])
    assert "$lms = 'C:\\Users\\o''brien\\.lmstudio\\bin\\lms.exe'" in text  # one PowerShell literal
    assert "& $lms daemon up" in text
    load = next(line.strip() for line in text.splitlines() if line.strip().startswith("& $lms 'load'"))
    assert load == ("& $lms 'load' 'gemma-4-31b' '--identifier' 'gemma-4-31b' '--gpu' 'max' '--yes' "
                    "'--context-length' '32768' '--parallel' '3'")
    assert "if ($loaded -notmatch [regex]::Escape('gemma-4-31b'))" in text
    assert "& $lms server start --port 1234 --bind '10.20.0.14'" in text
    assert "0.0.0.0" not in text


def test_without_daemon_or_bind_flag():
    text = render(WIN["engines"], lmstudio_windows_daemon_up=False, lmstudio_bind_flag="")
    assert "& $lms daemon up" not in text
    assert "& $lms server start --port 1234\n" in text


def test_slots_come_from_max_concurrency_and_must_agree_with_lm_studios_own_setting():
    engine = dict(WIN["engines"][0])
    assert lm.engine_slots(engine) == 3
    assert lm.engine_slots(dict(engine, max_concurrency=None)) == 3  # args.max_concurrent_slots alone
    with pytest.raises(Exception, match="differs from max_concurrency 4"):
        lm.engine_slots(dict(engine, max_concurrency=4))
    problems = rules.rules_lmstudio({"lmstudio_engines": [dict(engine, max_concurrency=4)], "lmstudio_port": 1234,
                                     "windows": True})
    assert ("lmstudio_engines[0].args.max_concurrent_slots" in [f for f, _ in problems]), problems
    assert rules.rules_lmstudio({"lmstudio_engines": [engine], "lmstudio_port": 1234, "windows": True}) == []


def _argspec_run(tmp_path, **extra):
    hv = {k: v for k, v in WIN.items()}
    hv.update({"ansible_connection": "local", "ansible_python_interpreter": sys.executable}, **extra)
    inv = {"all": {"children": {
        "gateway": {"hosts": {"ai-gateway": {"homelab_address": "10.30.0.10", "ansible_connection": "local"}}},
        "gpu_nodes": {"children": {"windows": {"hosts": {"win-5090": hv}}}}}}}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inv))
    (tmp_path / "play.yml").write_text("- hosts: windows\n  gather_facts: false\n  roles: [lmstudio]\n")
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FILTER_PLUGINS=str(REPO / "plugins" / "filter"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    # no task carries this tag: only the role's argument-spec validation (tagged always) runs
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inv.yml"),
                           str(tmp_path / "play.yml"), "--check", "--tags", "homelab_argspec_only"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_example_windows_vars_satisfy_the_argument_specs(tmp_path):
    p = _argspec_run(tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Validating arguments against arg spec" in p.stdout


def test_argument_specs_refuse_a_wrong_type(tmp_path):
    p = _argspec_run(tmp_path, lmstudio_windows_daemon_up="sometimes")
    assert p.returncode != 0
    assert "lmstudio_windows_daemon_up" in p.stdout
