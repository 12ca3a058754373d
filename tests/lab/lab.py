#!/usr/bin/env python3
"""The local lab: the whole homelab-ai stack on one machine, in podman containers.

    lab.py up      # image, network, hosts, models, secrets, engine binary, Open WebUI wheels, site.yml, API key
    lab.py down    # remove what `up` created (containers, network, .lab/); keep image and caches
    lab.py status  # containers and the endpoint
    lab.py info    # print the endpoint, key, CA and examples again

The lab is the example site: inventory/example with the small overlay inventory/lab (addresses,
connection, engine runtimes and tiny models, hardware facts, secrets). Every host of it except the
firewall becomes a systemd container (sshd inside) on a dedicated podman network at its
`homelab_address`; the OPNsense and Proxmox APIs are emulators on loopback (lab_services.py). Then
`ansible-playbook -i inventory/example -i inventory/lab site.yml` converges every layer over SSH. State that must not be committed (secrets, the lab's API key, Caddy's root CA,
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab_open_webui  # noqa: E402  (tests/lab/lab_open_webui.py: Open WebUI's wheelhouse and site check)

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = [REPO / "inventory" / "example", REPO / "inventory" / "lab"]
LAB_IMAGE = os.environ.get("HOMELAB_LAB_IMAGE", "localhost/homelab-lab-debian12:latest")
# Ubuntu 24.04 for the hosts whose inventory says `lab_image: ubuntu2404` (the GPU nodes: the seeds run Ubuntu there)
LAB_IMAGE_NOBLE = os.environ.get("HOMELAB_LAB_IMAGE_NOBLE", "localhost/homelab-lab-ubuntu2404:latest")
IMAGE_NOBLE = os.environ.get("HOMELAB_IMAGE_NOBLE", "localhost/homelab-ubuntu2404:latest")
STATE = Path(os.environ.get("LAB_STATE_DIR", REPO / ".lab"))
SSH_KEY = STATE / "ssh" / "id_ed25519"
IMAGE = os.environ.get("HOMELAB_IMAGE", "localhost/homelab-debian12:latest")
HERE = Path(__file__).resolve().parent
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
# the inventory: inventory/example with the lab overlay, as Ansible itself merges it


class Lab:
    """The example site as the lab runs it: `ansible-inventory -i inventory/example -i inventory/lab --list`
    (variables merged by Ansible's own precedence, not templated). Every host outside group `firewall` is a
    container; the firewall and the Proxmox API are emulators on loopback (lab_services.py)."""

    def __init__(self, inventories: list[Path] | None = None) -> None:
        self.inventories = inventories or INVENTORIES
        for inv in self.inventories:
            if not (inv / "hosts.yml").is_file():
                raise LabError(f"missing {inv / 'hosts.yml'}")
        cmd = [str(VENV_BIN / "ansible-inventory"), "--list"]
        for inv in self.inventories:
            cmd += ["-i", str(inv)]
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise LabError(f"ansible-inventory failed: {proc.stderr.strip()}")
        data = json.loads(proc.stdout)
        self.hostvars: dict[str, dict] = data.get("_meta", {}).get("hostvars", {})
        self.groups: dict[str, set[str]] = {}
        self._walk("all", data)
        self.vars = dict(DEFAULTS)
        for hv in self.hostvars.values():          # group `all` variables: every host carries them
            self.vars.update({k: v for k, v in hv.items() if k.startswith("lab_")})
            break

    def _walk(self, group: str, data: dict) -> set[str]:
        node = data.get(group, {})
        members = set(node.get("hosts", []))
        for child in node.get("children", []):
            members |= self._walk(child, data)
        self.groups[group] = members
        return members

    @property
    def hosts(self) -> list[str]:
        """Inventory hosts that are lab containers (all but the API-driven firewall)."""
        return sorted(h for h in self.hostvars if h not in self.groups.get("firewall", set()))

    def container(self, host: str) -> str:
        return f"{self.vars.get('lab_container_prefix', 'lab-')}{host}"

    def address(self, host: str) -> str:
        return self.hostvars[host]["homelab_address"]

    @property
    def gateway(self) -> str:
        gws = sorted(self.groups.get("gateway", set()))
        if not gws:
            raise LabError("the inventory has no host in group 'gateway'")
        return gws[0]

    def get(self, key: str):
        return self.vars[key]

    def routes(self) -> dict[str, str]:
        """route -> inventory host serving it."""
        return {e["route"]: h for h in self.hosts for e in self.hostvars[h].get("engines", []) or []}

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.get('lab_https_port')}/v1"


# ----------------------------------------------------------------------------------------------
# phases


def _lab_images(lab: Lab) -> dict:
    """lab image -> (base image, its build suite) for the images the inventory's hosts use."""
    images = {LAB_IMAGE: (IMAGE, "bookworm")}
    if any(_host_image(lab, h) == LAB_IMAGE_NOBLE for h in lab.hosts):
        images[LAB_IMAGE_NOBLE] = (IMAGE_NOBLE, "noble")
    return images


def _host_image(lab: Lab, host: str) -> str:
    kind = lab.hostvars[host].get("lab_image", "debian12")
    if kind not in ("debian12", "ubuntu2404"):
        raise LabError(f"{host}: lab_image: {kind!r} is not one of debian12, ubuntu2404")
    return LAB_IMAGE_NOBLE if kind == "ubuntu2404" else LAB_IMAGE


def phase_image(lab: Lab) -> None:
    for lab_image, (base, suite) in _lab_images(lab).items():
        t = time.monotonic()
        if podman("image", "exists", lab_image, check=False).returncode == 0:
            log("image", "ok", f"{lab_image} present", time.monotonic() - t)
            continue
        if podman("image", "exists", base, check=False).returncode != 0:
            log("image", "build", f"{base} missing: debootstrap + podman import (a few minutes)")
            run([str(REPO / "molecule" / "_shared" / "build-image.sh")], capture=False,
                env={**podman_env(), "HOMELAB_IMAGE_SUITE": suite, "HOMELAB_IMAGE": base})
        # The lab's hosts are reached over SSH like production hosts: the test image plus openssh-server.
        run(["podman", "build", "--quiet", "-t", lab_image, "--build-arg", f"BASE={base}",
             "-f", str(HERE / "Containerfile"), str(HERE)], env=podman_env(), timeout=900)
        log("image", "built", lab_image, time.monotonic() - t)


def phase_ssh_key() -> Path:
    """The key Ansible logs in with (root, key only), generated once into .lab/ssh/ (0600)."""
    t = time.monotonic()
    if not SSH_KEY.is_file():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "homelab-ai lab", "-f", str(SSH_KEY)])
        log("ssh", "created", f"{SSH_KEY.relative_to(REPO)} (0600)", time.monotonic() - t)
    else:
        log("ssh", "ok", f"{SSH_KEY.relative_to(REPO)} (reused)", time.monotonic() - t)
    os.chmod(SSH_KEY, 0o600)
    return SSH_KEY


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


def _run_container(lab: Lab, name: str, hostname: str, address: str, extra: list[str], cmd: list[str],
                   image: str = LAB_IMAGE) -> str:
    """Create or start one container; returns created/started/reused."""
    state = _container_state(name)
    if state == "running":
        return "reused"
    if state is not None:
        podman("start", name)
        return "started"
    podman("run", "-d", "--name", name, "--hostname", hostname, "--network", lab.get("lab_network"),
           "--ip", address, "--label", LABEL, *extra, image, *cmd)
    return "created"


def _authorize_key(name: str, pubkey: str) -> None:
    proc = subprocess.run(["podman", "exec", "-i", name, "sh", "-c",
                           "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys"],
                          input=pubkey, text=True, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise LabError(f"cannot install the lab's SSH key in {name}: {proc.stderr.strip()}")


def _wait_port(host: str, port: int, timeout: float, what: str) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise LabError(f"{what}: {host}:{port} not reachable after {timeout:.0f}s ({err})")
            time.sleep(0.5)


def phase_hosts(lab: Lab, key: Path) -> None:
    t = time.monotonic()
    pubkey = key.with_suffix(".pub").read_text()
    done: dict[str, list[str]] = {}
    for host in lab.hosts:
        name = lab.container(host)
        extra = ["--systemd", "always",
                 # nftables (common role) and Netdata's collectors need these inside the container.
                 "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--cap-add", "SYS_PTRACE"]
        if host == lab.gateway:
            extra += ["-p", f"127.0.0.1:{lab.get('lab_https_port')}:{lab.get('lab_container_https_port')}"]
        if host in lab.groups.get("wireguard", set()):
            # The WireGuard role enables IP forwarding (sysctl): /proc/sys is read-only in an unprivileged
            # container, so a WireGuard host of the lab runs privileged (its own network namespace still).
            extra += ["--privileged"]
        image = _host_image(lab, host)
        if image == LAB_IMAGE_NOBLE:
            # Ubuntu 24.04's systemd (255) keeps CAP_SYS_ADMIN across a unit's User= switch to set up its sandbox
            # (ProtectSystem=, PrivateTmp=, ...); without it in the container's bounding set every hardened unit
            # with a User= fails with 217/USER ("Failed to keep CAP_SYS_ADMIN"). A host (bare metal, a VM, a
            # Proxmox LXC with nesting) has it; Debian 12's systemd (252) does not ask for it.
            extra += ["--cap-add", "SYS_ADMIN"]
        how = _run_container(lab, name, host, lab.address(host), extra, ["/sbin/init"], image)
        done.setdefault(how, []).append(name)
    # Probe containers: plain clients at chosen addresses for the port test (no systemd, no sshd).
    for probe in lab.vars.get("lab_probe_hosts", []):
        how = _run_container(lab, probe["name"], probe["name"], probe["address"], [], ["sleep", "infinity"])
        done.setdefault(how, []).append(probe["name"])
    for host in lab.hosts:
        name = lab.container(host)
        _wait_systemd(name)
        _authorize_key(name, pubkey)
        _wait_port(lab.address(host), 22, 60, f"sshd in {name}")
    log("hosts", "ok", "; ".join(f"{how} {', '.join(names)}" for how, names in done.items()),
        time.monotonic() - t)


def _service_pidfile(kind: str) -> Path:
    return STATE / "services" / f"{kind}.pid"


def _service_alive(kind: str) -> int | None:
    pidfile = _service_pidfile(kind)
    if not pidfile.is_file():
        return None
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError, PermissionError):
        return None


def phase_services(lab: Lab, secrets_file: Path) -> None:
    """The OPNsense and Proxmox API emulators on loopback (TLS, CA in .lab/pki/), detached processes."""
    t = time.monotonic()
    (STATE / "services").mkdir(parents=True, exist_ok=True, mode=0o700)
    parts = []
    for kind, port_key, extra in (("opnsense", "lab_opnsense_port", ["--version", str(lab.vars.get("lab_opnsense_version", "26.7.2"))]),
                                  ("proxmox", "lab_proxmox_port", [])):
        port = int(lab.get(port_key))
        if _service_alive(kind):
            parts.append(f"{kind} :{port} (running)")
            continue
        logf = open(STATE / "services" / f"{kind}.log", "ab")
        proc = subprocess.Popen([sys.executable, str(HERE / "lab_services.py"), "serve", kind, "--port", str(port),
                                 "--pki", str(STATE / "pki"), "--secrets", str(secrets_file), *extra],
                                cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        _service_pidfile(kind).write_text(f"{proc.pid}\n")
        try:
            _wait_port("127.0.0.1", port, 30, f"the {kind} emulator (log: .lab/services/{kind}.log)")
        except LabError:
            proc.terminate()
            raise
        parts.append(f"{kind} :{port} (started)")
    log("services", "ok", ", ".join(parts), time.monotonic() - t)


def stop_services() -> list[str]:
    import signal
    stopped = []
    for kind in ("opnsense", "proxmox"):
        pid = _service_alive(kind)
        if pid:
            os.kill(pid, signal.SIGTERM)
            stopped.append(kind)
    return stopped


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
        # One engine key per route the site serves (validation refuses keys for routes no engine serves).
        "vault_engine_api_keys": {r: k for r, k in (current.get("vault_engine_api_keys") or {}).items()
                                  if r in routes},
        "vault_netdata_stream_api_key": current.get("vault_netdata_stream_api_key") or _uuid(),
        # The emulators (lab_services.py) accept exactly these credentials, like the real APIs.
        "vault_opnsense_api_key": current.get("vault_opnsense_api_key") or secrets.token_hex(20),
        "vault_opnsense_api_secret": current.get("vault_opnsense_api_secret") or secrets.token_urlsafe(30),
        "vault_proxmox_token_id": current.get("vault_proxmox_token_id") or "ansible@pve!homelab",
        "vault_proxmox_token_secret": current.get("vault_proxmox_token_secret") or _uuid(),
        # Defined as in the example's vault; unused (the Windows node's lab stand-in is reached over SSH).
        "vault_windows_password": current.get("vault_windows_password") or secrets.token_urlsafe(16),
        # MQTT users of the home automation layer (roles/mosquitto) and the vision-notifier's ingest token.
        "vault_mosquitto_passwords": {u: (current.get("vault_mosquitto_passwords") or {}).get(u)
                                      or secrets.token_urlsafe(18)
                                      for u in ("homeassistant", "ha_bridge", "vision_notifier", "frigate")},
        "vault_vision_notifier_ingest_token": (current.get("vault_vision_notifier_ingest_token")
                                               or secrets.token_urlsafe(24)),
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
    # Facts once per host per run, cached between the layers' plays (and reused by a rerun for 10 min).
    env.setdefault("ANSIBLE_GATHERING", "smart")
    env.setdefault("ANSIBLE_CACHE_PLUGIN", "jsonfile")
    env.setdefault("ANSIBLE_CACHE_PLUGIN_CONNECTION", str(STATE / "facts"))
    env.setdefault("ANSIBLE_CACHE_PLUGIN_TIMEOUT", "600")
    env["ANSIBLE_FORCE_COLOR"] = env.get("ANSIBLE_FORCE_COLOR", "1" if sys.stdout.isatty() else "0")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    inv_args = [a for inv in lab.inventories for a in ("-i", str(inv))]
    cmd = [str(VENV_BIN / "ansible-playbook"), *inv_args, str(REPO / "site.yml"), "-e", f"@{secrets_file}", *extra]
    shown = [a for inv in lab.inventories for a in ("-i", str(inv.relative_to(REPO)) if inv.is_relative_to(REPO) else str(inv))]
    log("converge", "run", shlex.join(["ansible-playbook", *shown, "site.yml",
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
    # The router takes a key the CLI created on its next store poll (router_app/access/ledger.py, poll_s 0.5 s); a
    # request that beats the poll is a 401 once any key exists (the example's Open WebUI key does): wait it out.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if https_get(lab, "/v1/models", secret)[0] != 401:
                break
        except (urllib.error.URLError, OSError, ssl.SSLError):
            break            # the router is not reachable yet: phase_access waits for it
        time.sleep(0.3)
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
    owui_line = "not enabled on the gateway"
    if lab_open_webui.enabled(lab):
        host, port = lab_open_webui.site(lab)
        owui_line = (f"https://{host}:{port}  (resolve {host} to 127.0.0.1 and trust the root CA; "
                     "the first account created is the admin)")
    print(f"""
homelab-ai lab is up.
  endpoint : {ep}   (Caddy TLS on 127.0.0.1:{lab.get('lab_https_port')} -> router -> llama-server engines)
  API key  : {key}   (also in {STATE.relative_to(REPO)}/api-key, 0600)
  root CA  : {ca}
  hosts    : {', '.join(lab.container(h) for h in lab.hosts)}  (podman exec -it <name> bash)
  Open WebUI: {owui_line}

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
    ssh_key = phase_ssh_key()
    phase_hosts(lab, ssh_key)
    phase_models(lab)
    secrets_file = phase_secrets(lab)
    phase_services(lab, secrets_file)
    phase_engine_binary(lab)
    this = sys.modules[__name__]
    lab_open_webui.phase_wheelhouse(this, lab)      # before the converge: the overlay points at the wheels
    recap = phase_converge(lab, secrets_file, args.ansible_args)
    key = phase_access(lab)
    lab_open_webui.phase_site(this, lab)            # its key was ensured by the converge itself
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
    stopped = stop_services()
    log("services", "stopped", ", ".join(stopped) or "none running", time.monotonic() - t0)
    names = [lab.container(h) for h in lab.hosts] + [p["name"] for p in lab.vars.get("lab_probe_hosts", [])]
    # Also anything else that carries the lab label (a host renamed in the inventory since `up`).
    labelled = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout.split()
    gone, slow = [], []
    for name in sorted(set(names) | set(labelled)):
        if _container_state(name) is not None:
            try:
                podman("rm", "-f", "-t", "5", name, timeout=120)
                gone.append(name)
            except (subprocess.TimeoutExpired, LabError) as exc:
                # Seen once in CI under load: `podman rm` of the stopped gateway outlasted 120 s and the whole
                # teardown stopped there, leaving the other hosts up. Go on with the others; retry this one last.
                log("hosts", "retry", f"{name}: {str(exc).splitlines()[0]}")
                slow.append(name)
    for name in slow:
        if _container_state(name) is not None:
            podman("kill", name, check=False, timeout=120)
            podman("rm", "-f", "-t", "0", name, timeout=600)
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
        print(f"{lab.container(h):<20} {lab.address(h):<15} {st}")
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
