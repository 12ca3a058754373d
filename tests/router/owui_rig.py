"""The real Open WebUI (from the cached venv, tests/tools/build_open_webui_venv.sh) wired to a real homelab-router,
with the environment roles/open_webui writes. The browser side is tests/owui_browser.py."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "tools" / "build_open_webui_venv.sh"


def open_webui_bin() -> str:
    """Path of the cached `open-webui` entry point (built from PyPI on first use, a few minutes); OPEN_WEBUI_BIN
    names another install of the same version."""
    if os.environ.get("OPEN_WEBUI_BIN"):
        return os.environ["OPEN_WEBUI_BIN"]
    out = subprocess.run([str(BUILD)], check=True, capture_output=True, text=True, timeout=1200)
    return out.stdout.strip().splitlines()[-1]


def role_env(**overrides) -> dict:
    """The environment file roles/open_webui writes, rendered from the role's own template and defaults."""
    import jinja2
    import yaml

    role = ROOT / "roles" / "open_webui"
    values = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    values.update(overrides, ansible_managed="test", inventory_hostname="test")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "# " + str(text)
    env.filters["ternary"] = lambda v, a, b: a if v else b
    out = {}
    for line in env.from_string((role / "templates" / "open-webui.env.j2").read_text()).render(values).splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def owui_env(data_dir: pathlib.Path, router_url: str, key: str) -> dict:
    """The role's settings for this rig; only the session key (the unit passes it from a credential) is added."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(role_env(open_webui_data_dir=str(data_dir), open_webui_router_url=router_url + "/v1",
                        open_webui_router_api_key=key, open_webui_model_list_timeout_s=3,
                        # preselect another model, so that picking homelab/auto in the page is a real choice
                        open_webui_default_model="homelab/chat",
                        # the test has no embeddings route; homelab/auto exercises the ui_housekeeping bucket
                        open_webui_task_model="homelab/auto", open_webui_extra_env={"GLOBAL_LOG_LEVEL": "WARNING"}))
    env["WEBUI_SECRET_KEY"] = "test-secret-key-for-the-browser-test"
    return env


class OpenWebUI:
    def __init__(self, binary: str, port: int, env: dict, log: pathlib.Path):
        self.binary, self.port, self.env, self.log = binary, port, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def start(self, timeout: float = 180) -> "OpenWebUI":
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=self.env, stdout=fh, stderr=subprocess.STDOUT, cwd=self.env["DATA_DIR"],
                                     start_new_session=True)
        fh.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"open-webui exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"open-webui did not answer /health in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

