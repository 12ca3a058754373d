#!/usr/bin/env python3
"""The local lab: the whole homelab-ai stack on one machine, in podman containers.

    lab.py up      # image, network, hosts, models, secrets, engine binary, site.yml, API key
    lab.py down    # remove what `up` created (containers, network, .lab/); keep image and caches
    lab.py status  # containers and the endpoint
    lab.py info    # print the endpoint, key, CA and examples again

The hosts come from inventory/lab (the single source of truth): every inventory host with
`ansible_connection: containers.podman.podman` becomes a systemd container on a dedicated podman
network, at its `homelab_address`. Then the very same `site.yml` that runs against real machines
converges them. State that must not be committed (secrets, the lab's API key, Caddy's root CA,
generated models) lives in `.lab/` (git-ignored, 0700/0600).

Standard library only (plus PyYAML, which Ansible brings), so it runs from the project venv.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import ssl
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventory" / "lab"
STATE = Path(os.environ.get("LAB_STATE_DIR", REPO / ".lab"))
IMAGE = os.environ.get("HOMELAB_IMAGE", "localhost/homelab-debian12:latest")
LABEL = "io.homelab-ai.lab=1"
VENV_BIN = Path(sys.executable).parent

# Everything below is read from inventory/lab/group_vars/all/lab.yml (lab_* keys); these are
# only the fallbacks when a key is absent.
DEFAULTS = {
    "lab_network": "homelab-lab",
    "lab_subnet": "172.31.250.0/24",
    "lab_gateway_ip": "172.31.250.1",
    "lab_https_port": 18443,
    "lab_container_https_port": 443,
    "lab_app_name": "lab",
}


class LabError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------
# small helpers


def log(phase: str, status: str, detail: str, seconds: float | None = None) -> None:
    took = f" ({seconds:.1f}s)" if seconds is not None else ""
    print(f"[lab] {phase:<9} {status:<7} {detail}{took}", flush=True)


def run(cmd: list[str], *, check: bool = True, capture: bool = True, env: dict | None = None,
        input_text: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, text=True, env=env, input=input_text, timeout=timeout,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if check and proc.returncode != 0:
        err = (proc.stderr or "").strip() if capture else ""
        raise LabError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{err}")
    return proc


def podman(*args: str, check: bool = True, timeout: float | None = 120) -> subprocess.CompletedProcess:
    return run(["podman", *args], check=check, timeout=timeout)


def podman_exec(container: str, *cmd: str, check: bool = True, user: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command inside a lab container (used by the end-to-end test too)."""
    args = ["podman", "exec"] + (["--user", user] if user else []) + [container, *cmd]
    proc = subprocess.run(args, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def podman_env() -> dict:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(REPO / "molecule" / "_shared" / "containers.conf"))
    return env


def write_private(path: Path, text: str) -> None:
    """Write a secret file 0600 without a window where it is world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_suffix(path.suffix + ".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(path.with_suffix(path.suffix + ".tmp"), path)
    os.chmod(path, 0o600)


# ----------------------------------------------------------------------------------------------
# the inventory


def _load_yaml_tree(path: Path) -> dict:
    """group_vars/<name>.yml or group_vars/<name>/*.yml, merged shallowly."""
    data: dict = {}
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.suffix in (".yml", ".yaml"):
                data.update(yaml.safe_load(f.read_text()) or {})
    else:
        for cand in (path.with_suffix(".yml"), path.with_suffix(".yaml"), path):
            if cand.is_file():
                data.update(yaml.safe_load(cand.read_text()) or {})
                break
    return data


class Lab:
    """What the lab inventory says, read without templating (plain YAML)."""

    def __init__(self) -> None:
        hosts_file = INVENTORY / "hosts.yml"
        if not hosts_file.is_file():
            raise LabError(f"missing {hosts_file}")
        tree = yaml.safe_load(hosts_file.read_text()) or {}
        self.groups: dict[str, set[str]] = {}
        self.hostvars: dict[str, dict] = {}
        self._walk("all", tree.get("all", {}))
        self.vars = dict(DEFAULTS)
        self.vars.update(_load_yaml_tree(INVENTORY / "group_vars" / "all"))
        for host in self.hostvars:
            self.hostvars[host].update(_load_yaml_tree(INVENTORY / "host_vars" / host))

    def _walk(self, group: str, node: dict) -> None:
        members = self.groups.setdefault(group, set())
        for host, hvars in ((node or {}).get("hosts") or {}).items():
            self.hostvars.setdefault(host, {}).update(hvars or {})
            members.add(host)
        for child, cnode in ((node or {}).get("children") or {}).items():
            self._walk(child, cnode or {})
            members |= self.groups[child]

    @property
    def hosts(self) -> list[str]:
        return sorted(h for h, v in self.hostvars.items()
                      if v.get("ansible_connection", self.vars.get("ansible_connection"))
                      == "containers.podman.podman")

    def container(self, host: str) -> str:
        return self.hostvars[host].get("ansible_host", host)

    @property
    def gateway(self) -> str:
        gws = sorted(self.groups.get("gateway", set()))
        if not gws:
            raise LabError("inventory/lab has no host in group 'gateway'")
        return gws[0]

    def get(self, key: str):
        return self.vars[key]

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.get('lab_https_port')}/v1"


# ----------------------------------------------------------------------------------------------
# phases


def phase_image(lab: Lab) -> None:
    t = time.monotonic()
    if podman("image", "exists", IMAGE, check=False).returncode == 0:
        log("image", "ok", f"{IMAGE} present", time.monotonic() - t)
        return
    log("image", "build", f"{IMAGE} missing: debootstrap + podman import (a few minutes)")
    run([str(REPO / "molecule" / "_shared" / "build-image.sh")], capture=False, env=podman_env())
    log("image", "built", IMAGE, time.monotonic() - t)


def phase_network(lab: Lab) -> None:
    t = time.monotonic()
    name, subnet, gw = lab.get("lab_network"), lab.get("lab_subnet"), lab.get("lab_gateway_ip")
    if podman("network", "exists", name, check=False).returncode == 0:
        info = json.loads(podman("network", "inspect", name).stdout)[0]
        subnets = [s.get("subnet") for s in info.get("subnets", [])]
        if subnet not in subnets:
            raise LabError(f"podman network {name} exists with subnets {subnets}, expected {subnet}; "
                           f"run `make lab-down` first")
        log("network", "ok", f"{name} {subnet} (reused)", time.monotonic() - t)
        return
    proc = podman("network", "create", "--subnet", subnet, "--gateway", gw, "--label", LABEL, name,
                  check=False)
    if proc.returncode != 0:
        raise LabError(f"cannot create podman network {name} ({subnet}): {proc.stderr.strip()}\n"
                       f"If the subnet clashes with one of your networks, change lab_subnet and the "
                       f"homelab_address values in inventory/lab.")
    log("network", "created", f"{name} {subnet}", time.monotonic() - t)


def _container_state(name: str) -> str | None:
    proc = podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _wait_systemd(name: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        proc = podman("exec", name, "systemctl", "is-system-running", check=False, timeout=30)
        state = proc.stdout.strip() or "unknown"
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    raise LabError(f"systemd in {name} did not come up (state: {state})")


def phase_hosts(lab: Lab) -> None:
    t = time.monotonic()
    created, started, reused = [], [], []
    for host in lab.hosts:
        hv = lab.hostvars[host]
        name = lab.container(host)
        state = _container_state(name)
        if state == "running":
            reused.append(name)
            continue
        if state is not None:
            podman("start", name)
            started.append(name)
            continue
        cmd = ["run", "-d", "--name", name, "--hostname", host,
               "--network", lab.get("lab_network"), "--ip", hv["homelab_address"],
               "--label", LABEL, "--systemd", "always",
               # nftables (common role) and Netdata's collectors need these inside the container.
               "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--cap-add", "SYS_PTRACE"]
        if host == lab.gateway:
            cmd += ["-p", f"127.0.0.1:{lab.get('lab_https_port')}:{lab.get('lab_container_https_port')}"]
        cmd += [IMAGE, "/sbin/init"]
        podman(*cmd)
        created.append(name)
    for host in lab.hosts:
        _wait_systemd(lab.container(host))
    parts = []
    if created:
        parts.append(f"created {', '.join(created)}")
    if started:
        parts.append(f"started {', '.join(started)}")
    if reused:
        parts.append(f"reused {', '.join(reused)}")
    log("hosts", "ok", "; ".join(parts), time.monotonic() - t)


def phase_models(lab: Lab) -> None:
    """Generate the tiny GGUF models the engines serve (deterministic, no download)."""
    t = time.monotonic()
    made, kept = [], []
    for spec in lab.get("lab_models"):
        # Each entry names its generator: the text model (default) or the vision projector.
        gen = REPO / "tests" / "fixtures" / spec.get("script", "make_tiny_gguf.py")
        if not gen.is_file():
            raise LabError(f"missing {gen} (a tiny model generator)")
        out = REPO / spec["path"]
        if out.is_file() and out.stat().st_size > 0:
            kept.append(out.name)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        run([sys.executable, str(gen), "--out", str(out), *[str(a) for a in spec.get("args", [])]])
        made.append(out.name)
    detail = ", ".join(f"{n} (new)" for n in made) + (", " if made and kept else "") + ", ".join(kept)
    log("models", "ok", detail, time.monotonic() - t)


def phase_secrets(lab: Lab) -> Path:
    """Lab secrets, generated once, 0600, handed to Ansible with -e @file (vault_* names)."""
    t = time.monotonic()
    STATE.mkdir(mode=0o700, exist_ok=True)
    os.chmod(STATE, 0o700)
    path = STATE / "secrets.yml"
    routes = sorted({e["route"] for h in lab.hosts for e in lab.hostvars[h].get("engines", []) or []})
    current = yaml.safe_load(path.read_text()) if path.is_file() else None
    current = current or {}
    want = {
        "vault_router_admin_key": current.get("vault_router_admin_key") or secrets.token_urlsafe(32),
        "vault_engine_api_keys": dict(current.get("vault_engine_api_keys") or {}),
        "vault_netdata_stream_api_key": current.get("vault_netdata_stream_api_key") or _uuid(),
        # Not used by the lab (no firewall or Proxmox host in it) but defined so that every
        # secret the roles know is present, as in the example inventory's vault.
        "vault_opnsense_api_key": current.get("vault_opnsense_api_key") or "lab-unused",
        "vault_opnsense_api_secret": current.get("vault_opnsense_api_secret") or "lab-unused",
        "vault_proxmox_token_id": current.get("vault_proxmox_token_id") or "lab@pve!unused",
        "vault_proxmox_token_secret": current.get("vault_proxmox_token_secret") or "lab-unused",
    }
    for route in routes:
        want["vault_engine_api_keys"].setdefault(route, secrets.token_urlsafe(24))
    if want != current:
        text = "# Generated by tests/lab/lab.py for the local lab only. Never commit.\n"
        text += yaml.safe_dump(want, sort_keys=True)
        write_private(path, text)
        log("secrets", "created", f"{path.relative_to(REPO)} (0600)", time.monotonic() - t)
    else:
        os.chmod(path, 0o600)
        log("secrets", "ok", f"{path.relative_to(REPO)} (0600, reused)", time.monotonic() - t)
    return path


def _uuid() -> str:
    import uuid
    return str(uuid.uuid4())


def phase_engine_binary(lab: Lab) -> None:
    t = time.monotonic()
    script = REPO / "tests" / "tools" / "build_llama_server_cache.sh"
    if not script.is_file():
        raise LabError(f"missing {script} (builds the llama-server binary cache)")
    want = REPO / lab.get("lab_llama_server_binary")
    if want.is_file():
        log("engine", "ok", f"llama-server cached at {want.relative_to(REPO)}", time.monotonic() - t)
        return
    log("engine", "build", "llama-server from the llama-cpp-python sdist (about 5 min on 2 cores, once)")
    proc = run(["bash", str(script)], capture=True)
    built = Path(proc.stdout.strip().splitlines()[-1])
    if not want.is_file():
        raise LabError(f"llama-server built at {built}, but the lab expects {want} (lab_llama_server_binary)")
    log("engine", "built", str(want.relative_to(REPO)), time.monotonic() - t)


def phase_converge(lab: Lab, secrets_file: Path, extra: list[str]) -> dict:
    """Run site.yml on the lab inventory; show Ansible's own output, summarise the recap."""
    t = time.monotonic()
    env = podman_env()
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    env["ANSIBLE_FORCE_COLOR"] = env.get("ANSIBLE_FORCE_COLOR", "1" if sys.stdout.isatty() else "0")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), str(REPO / "site.yml"),
           "-e", f"@{secrets_file}", *extra]
    log("converge", "run", shlex.join(["ansible-playbook", "-i", "inventory/lab", "site.yml",
                                       "-e", f"@{secrets_file.relative_to(REPO)}", *extra]))
    # Stream Ansible's output to the user and keep it to read the recap.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, bufsize=1)
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    assert proc.stdout is not None
    log_path = STATE / "last-converge.log"
    with open(log_path, "w") as logf:
        for line in proc.stdout:
            sys.stdout.write(line)
            logf.write(line)
            plain = _strip_ansi(line)
            if plain.startswith("PLAY RECAP"):
                in_recap = True
                continue
            if in_recap and ":" in plain and "=" in plain:
                host, _, counts = plain.partition(":")
                recap[host.strip()] = {k: int(v) for k, v in
                                       (kv.split("=") for kv in counts.split() if "=" in kv)}
    rc = proc.wait()
    changed = sum(c.get("changed", 0) for c in recap.values())
    failed = sum(c.get("failed", 0) + c.get("unreachable", 0) for c in recap.values())
    if rc != 0:
        log("converge", "FAILED", f"ansible-playbook rc={rc}, failed/unreachable={failed} "
            f"(log: {log_path.relative_to(REPO)})", time.monotonic() - t)
        raise LabError("site.yml failed on the lab")
    log("converge", "ok", f"{len(recap)} hosts, changed={changed}", time.monotonic() - t)
    return recap


def _strip_ansi(s: str) -> str:
    import re
    return re.sub(r"\x1b\[[0-9;]*m", "", s)


# ---- access: Caddy's root CA and the lab's API key


def router_cli(lab: Lab) -> list[str]:
    """The `homelab-router` command inside the gateway container, as the service's own user."""
    gv = lab.vars
    exe = gv.get("lab_router_cli", "/opt/homelab-router/venv/bin/homelab-router")
    user = gv.get("lab_router_user", "homelab-router")
    return ["podman", "exec", "--user", user, lab.container(lab.gateway), exe]


def router_config_path(lab: Lab) -> str:
    return lab.vars.get("lab_router_config", "/etc/homelab-router/config.yaml")


def create_key(lab: Lab, app: str, extra: list[str] | None = None) -> str:
    """`homelab-router keys create --json` inside the gateway; returns the secret (shown once).
    An app has one active key: if it already has one (its secret lost), rotate it instead."""
    cfg = router_config_path(lab)
    proc = run([*router_cli(lab), "keys", "create", "--config", cfg, "--app", app, "--json",
                *(extra or [])], check=False)
    if proc.returncode != 0:
        listed = run([*router_cli(lab), "keys", "list", "--config", cfg, "--json"], check=False)
        if listed.returncode == 0 and f'"{app}"' in listed.stdout:
            proc = run([*router_cli(lab), "keys", "rotate", "--config", cfg, app, "--json"])
        else:
            raise LabError(f"homelab-router keys create failed: {proc.stderr.strip() or proc.stdout.strip()}")
    secret = _find_secret(proc.stdout)
    if not secret:
        raise LabError(f"could not find the key in `homelab-router keys create` output:\n{proc.stdout}")
    return secret


def _find_secret(out: str) -> str | None:
    """The secret is the one token that looks like a bearer key (JSON or plain output)."""
    out = out.strip()
    try:
        data = json.loads(out)
        if isinstance(data, dict):
            for k in ("secret", "key", "api_key", "token"):
                if isinstance(data.get(k), str):
                    return data[k]
    except json.JSONDecodeError:
        pass
    candidates = []
    for line in out.splitlines():
        for word in line.replace("=", " ").replace(":", " ").split():
            if len(word) >= 24 and all(c.isalnum() or c in "-_." for c in word):
                candidates.append(word)
    return candidates[-1] if candidates else None


def ca_path() -> Path:
    return STATE / "caddy-root.crt"


def fetch_ca(lab: Lab) -> Path:
    src = lab.vars.get("lab_caddy_root_ca", "/usr/local/share/homelab/caddy-root-ca.crt")
    deadline = time.monotonic() + 60
    while True:
        proc = podman("exec", lab.container(lab.gateway), "cat", src, check=False)
        if proc.returncode == 0 and "BEGIN CERTIFICATE" in proc.stdout:
            break
        if time.monotonic() > deadline:
            raise LabError(f"Caddy's root CA not found at {src} in {lab.container(lab.gateway)}")
        time.sleep(1)
    dest = ca_path()
    if not dest.is_file() or dest.read_text() != proc.stdout:
        dest.parent.mkdir(mode=0o700, exist_ok=True)
        dest.write_text(proc.stdout)
    os.chmod(dest, 0o644)
    return dest


def https_get(lab: Lab, path: str, key: str | None, timeout: float = 10) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(ca_path()))
    req = urllib.request.Request(lab.endpoint.rsplit("/v1", 1)[0] + path)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def phase_access(lab: Lab) -> str:
    t = time.monotonic()
    ca = fetch_ca(lab)
    key_file = STATE / "api-key"
    app = lab.get("lab_app_name")
    key = key_file.read_text().strip() if key_file.is_file() else ""
    status = "reused"
    if key:
        code, _ = _wait_https(lab, "/v1/models", key)
        if code == 401:          # the gateway was recreated: its key store is new
            key = ""
    if not key:
        key = create_key(lab, app)
        write_private(key_file, key + "\n")
        status = "created"
    code, body = _wait_https(lab, "/v1/models", key)
    if code != 200:
        raise LabError(f"GET /v1/models through Caddy answered {code}: {body[:300]}")
    log("access", "ok", f"key for app '{app}' {status}; CA {ca.relative_to(REPO)}; /v1/models 200",
        time.monotonic() - t)
    return key


def _wait_https(lab: Lab, path: str, key: str | None, timeout: float = 60) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        try:
            last = https_get(lab, path, key)
            if last[0] not in (502, 503, 504):
                return last
        except (urllib.error.URLError, OSError, ssl.SSLError) as err:
            last = (0, str(err))
        time.sleep(1)
    return last


def print_summary(lab: Lab, key: str) -> None:
    ep = lab.endpoint
    ca = ca_path()
    print(f"""
homelab-ai lab is up.
  endpoint : {ep}   (Caddy TLS on 127.0.0.1:{lab.get('lab_https_port')} -> router -> llama-server engines)
  API key  : {key}   (also in {STATE.relative_to(REPO)}/api-key, 0600)
  root CA  : {ca}
  hosts    : {', '.join(lab.container(h) for h in lab.hosts)}  (podman exec -it <name> bash)

curl:
  curl --cacert {ca} {ep}/chat/completions \\
    -H "Authorization: Bearer $(cat {STATE}/api-key)" -H 'Content-Type: application/json' \\
    -d '{{"model": "homelab/auto", "max_tokens": 16, "messages": [{{"role": "user", "content": "Refactor this Python function"}}]}}' -i

openai (Python):
  SSL_CERT_FILE={ca} OPENAI_BASE_URL={ep} OPENAI_API_KEY=$(cat {STATE}/api-key) \\
  {VENV_BIN.relative_to(REPO) if VENV_BIN.is_relative_to(REPO) else VENV_BIN}/python -c 'import openai; r = openai.OpenAI().chat.completions.with_raw_response.create(model="homelab/auto", max_tokens=16, messages=[{{"role": "user", "content": "hello, how are you?"}}]); print(r.headers.get("x-homelab-route"), r.parse().choices[0].message.content)'

Tear down with: make lab-down
""", flush=True)


# ----------------------------------------------------------------------------------------------
# commands


def cmd_up(args) -> int:
    t0 = time.monotonic()
    os.environ.update({k: v for k, v in podman_env().items() if k == "CONTAINERS_CONF"})
    lab = Lab()
    phase_image(lab)
    phase_network(lab)
    phase_hosts(lab)
    phase_models(lab)
    secrets_file = phase_secrets(lab)
    phase_engine_binary(lab)
    recap = phase_converge(lab, secrets_file, args.ansible_args)
    key = phase_access(lab)
    changed = sum(c.get("changed", 0) for c in recap.values())
    log("done", "ok", f"lab up, site.yml changed={changed}", time.monotonic() - t0)
    (STATE / "last-up.json").write_text(json.dumps(
        {"seconds": round(time.monotonic() - t0, 1), "changed": changed, "recap": recap,
         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    if not args.quiet:
        print_summary(lab, key)
    return 0


def cmd_down(args) -> int:
    t0 = time.monotonic()
    os.environ.update({k: v for k, v in podman_env().items() if k == "CONTAINERS_CONF"})
    lab = Lab()
    names = [lab.container(h) for h in lab.hosts]
    # Also anything else that carries the lab label (a host renamed in the inventory since `up`).
    labelled = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout.split()
    gone = []
    for name in sorted(set(names) | set(labelled)):
        if _container_state(name) is not None:
            podman("rm", "-f", "-t", "5", name, timeout=120)
            gone.append(name)
    log("hosts", "removed", ", ".join(gone) or "none", time.monotonic() - t0)
    net = lab.get("lab_network")
    if podman("network", "exists", net, check=False).returncode == 0:
        podman("network", "rm", "-f", net)
        log("network", "removed", net)
    else:
        log("network", "ok", f"{net} absent")
    if STATE.exists():
        shutil.rmtree(STATE)
        log("state", "removed", str(STATE.relative_to(REPO) if STATE.is_relative_to(REPO) else STATE))
    log("done", "ok", f"lab down; kept the image {IMAGE} and .cache/", time.monotonic() - t0)
    return 0


def cmd_status(args) -> int:
    lab = Lab()
    ok = True
    for h in lab.hosts:
        st = _container_state(lab.container(h)) or "absent"
        ok &= st == "running"
        print(f"{lab.container(h):<16} {lab.hostvars[h]['homelab_address']:<15} {st}")
    key_file = STATE / "api-key"
    if ok and key_file.is_file() and ca_path().is_file():
        code, _ = https_get(lab, "/v1/models", key_file.read_text().strip())
        print(f"endpoint {lab.endpoint}: GET /v1/models -> {code}")
        ok &= code == 200
    else:
        ok = False
    return 0 if ok else 1


def cmd_info(args) -> int:
    lab = Lab()
    key_file = STATE / "api-key"
    if not key_file.is_file():
        print("the lab is not up (no .lab/api-key); run `make lab`", file=sys.stderr)
        return 1
    print_summary(lab, key_file.read_text().strip())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring the lab up (idempotent)")
    up.add_argument("--quiet", action="store_true", help="no closing summary")
    up.add_argument("ansible_args", nargs="*", help="extra ansible-playbook arguments (after --)")
    sub.add_parser("down", help="remove the lab")
    sub.add_parser("status", help="show the lab's containers and endpoint")
    sub.add_parser("info", help="print the endpoint, key and examples")
    args = p.parse_args(argv)
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "info": cmd_info}[args.cmd](args)
    except LabError as err:
        print(f"[lab] error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
