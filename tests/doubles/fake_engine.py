#!/usr/bin/env python3
"""TEST DOUBLE - a fake inference engine. Never deploy it.

One stdlib-only file that stands in for the vLLM, Ollama and LM Studio (`lms`) command
lines in Molecule scenarios, where the real engines cannot be downloaded or run (no GPU,
no network to their release hosts). It is installed through each role's own source
variables (a wheel for vLLM, release-shaped tarballs for Ollama and LM Studio), so the
roles' real install, environment, unit, restart and health-wait logic is what runs.

The program picks its personality from the name it is called by (``vllm``, ``hf``,
``ollama``, ``lms``) or from ``--as NAME`` as the first argument.

HTTP endpoints served by every personality:
  GET  /health /v1/models /fake/info (argv, selected environment, start time)
  POST /v1/chat/completions (stream or not) /v1/completions /v1/embeddings
Ollama also serves GET / /api/version /api/tags and POST /api/pull /api/copy /api/create (ollama docs/api.md).

A "poisoned CUDA context" can be simulated: while the file named by FAKE_ENGINE_POISON
(default /run/fake-engine/cuda-poisoned) exists, /health answers 500 and the process
logs ``CUDA error: initialization error`` like a real engine whose driver is degraded.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.0.0+testdouble"
POISON = os.environ.get("FAKE_ENGINE_POISON", "/run/fake-engine/cuda-poisoned")
WORDS = "the quick brown fox jumps over a lazy dog near the river".split()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- HTTP server
class State:
    def __init__(self, personality: str, models, api_key: str | None, extra: dict):
        self.personality = personality
        self.models = models  # callable -> list[str]
        self.api_key = api_key
        self.extra = extra
        self.started = time.time()
        self.pulled: dict[str, dict] = {}


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        server_version = f"fake-{state.personality}/{VERSION}"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # journal-friendly access log
            log(f"{self.address_string()} {fmt % args}")

        # helpers
        def send_json(self, code: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b"{}"
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return {"__invalid__": True}

        def authorized(self) -> bool:
            if not state.api_key:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {state.api_key}":
                return True
            self.send_json(401, {"error": {"message": "Unauthorized", "type": "invalid_api_key"}})
            return False

        def poisoned(self) -> bool:
            if os.path.exists(POISON):
                log("RuntimeError: CUDA error: initialization error (fake engine: poison file present)")
                return True
            return False

        # routes
        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/health":
                if self.poisoned():
                    return self.send_json(500, {"error": "CUDA error: initialization error"})
                return self.send_json(200, {"status": "ok"})
            if path == "/fake/info":
                return self.send_json(200, {
                    "personality": state.personality, "argv": sys.argv, "pid": os.getpid(),
                    "started": state.started, "api_key_set": bool(state.api_key),
                    "env": {k: v for k, v in os.environ.items()
                            if k.startswith(("OLLAMA_", "HF_", "FAKE_", "CUDA_")) or k in ("HOME", "USER")},
                    **state.extra})
            if state.personality == "ollama":
                if path == "/":
                    return self.send_json(200, "Ollama is running")
                if path == "/api/version":
                    return self.send_json(200, {"version": VERSION})
                if path == "/api/tags":
                    return self.send_json(200, {"models": [
                        {"name": n, "model": n, "size": 1, "digest": d["digest"],
                         "modified_at": d["modified_at"]} for n, d in sorted(load_ollama_models().items())]})
            if path == "/v1/models":
                if not self.authorized():
                    return None
                return self.send_json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": int(state.started), "owned_by": "testdouble"}
                    for m in state.models()]})
            return self.send_json(404, {"error": {"message": f"no route {path}"}})

        def do_POST(self):  # noqa: N802
            path = self.path.split("?")[0]
            req = self.body()
            if req.get("__invalid__"):
                return self.send_json(400, {"error": {"message": "invalid JSON"}})
            if state.personality == "ollama" and path == "/api/pull":
                name = req.get("model") or req.get("name") or ""
                if not name:
                    return self.send_json(400, {"error": "model is required"})
                save_ollama_model(name)
                return self.send_json(200, {"status": "success"})
            if state.personality == "ollama" and path == "/api/copy":  # docs/api.md "Copy a Model"
                src, dst = _tagged(req.get("source") or ""), req.get("destination") or ""
                if src not in load_ollama_models() or not dst:
                    return self.send_json(404, {"error": f"model '{src}' not found"})
                save_ollama_model(dst)
                return self.send_json(200, {})
            if state.personality == "ollama" and path == "/api/create":  # docs/api.md "Create a Model"
                name, gguf = req.get("model") or "", req.get("files") or {}
                if not name or not gguf:
                    return self.send_json(400, {"error": "model and files are required"})
                save_ollama_model(name)
                return self.send_json(200, {"status": "success"})
            if not path.startswith("/v1/"):
                return self.send_json(404, {"error": {"message": f"no route {path}"}})
            if not self.authorized():
                return None
            if self.poisoned():
                return self.send_json(500, {"error": {"message": "CUDA error: initialization error"}})
            model = req.get("model") or (state.models() or ["fake"])[0]
            n = max(1, min(int(req.get("max_tokens") or 8), 64))
            words = [WORDS[i % len(WORDS)] for i in range(n)]
            created = int(time.time())
            if path == "/v1/embeddings":
                inputs = req.get("input", "")
                inputs = inputs if isinstance(inputs, list) else [inputs]
                data = []
                for i, text in enumerate(inputs):
                    digest = hashlib.sha256(str(text).encode()).digest()
                    data.append({"object": "embedding", "index": i,
                                 "embedding": [b / 255.0 for b in digest[:16]]})
                return self.send_json(200, {"object": "list", "model": model, "data": data,
                                            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})
            usage = {"prompt_tokens": 4, "completion_tokens": n, "total_tokens": 4 + n}
            if path == "/v1/completions":
                return self.send_json(200, {
                    "id": "cmpl-fake", "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": " " + " ".join(words), "finish_reason": "length"}],
                    "usage": usage})
            if path != "/v1/chat/completions":
                return self.send_json(404, {"error": {"message": f"no route {path}"}})
            if not req.get("stream"):
                return self.send_json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                                 "finish_reason": "length"}],
                    "usage": usage})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()

            def chunk(delta, finish=None):
                payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()

            chunk({"role": "assistant", "content": ""})
            for i, w in enumerate(words):
                chunk({"content": (" " if i else "") + w})
            chunk({}, "length")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True
            return None

    return Handler


def serve(state: State, host: str, port: int) -> int:
    httpd = ThreadingHTTPServer((host, port), make_handler(state))
    httpd.daemon_threads = True

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"fake {state.personality} {VERSION} listening on {host}:{port} models={state.models()}")
    if os.path.exists(POISON):
        log("RuntimeError: CUDA error: initialization error (fake engine: poison file present at start)")
    httpd.serve_forever()
    return 0


# --------------------------------------------------------------------------- vLLM
# The flags and values the pinned vLLM accepts come from the same table validation uses
# (plugins/filter/vllm_flags.py, shipped next to this file inside the double's wheel), so the double refuses
# exactly what the real `vllm serve` of that version refuses: unknown flags (argparse exits 2 with
# "unrecognized arguments"), values outside a flag's choices, malformed JSON, bad JSON sub-values.
FAKE_VLLM_VERSION = os.environ.get("FAKE_VLLM_VERSION", "0.11.0")


def _vllm_flags():
    try:
        import vllm_flags  # inside the wheel
    except ImportError:  # run from the repository
        import importlib.util
        from pathlib import Path
        path = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "vllm_flags.py"
        spec = importlib.util.spec_from_file_location("vllm_flags", path)
        vllm_flags = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(vllm_flags)
    return vllm_flags


def vllm_parser(version: str) -> tuple[argparse.ArgumentParser, dict]:
    table = _vllm_flags().VLLM_FLAGS[version]
    ap = argparse.ArgumentParser(prog="vllm serve")
    ap.add_argument("model")
    for key, kind in sorted(table["flags"].items()):
        flag = "--" + key.replace("_", "-")
        if key == "served_model_name":
            ap.add_argument(flag, nargs="+")
        elif kind == "bool":
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(kind, tuple):
            ap.add_argument(flag, choices=[str(k) for k in kind])
        elif kind == "int":
            ap.add_argument(flag, type=int)
        elif kind == "float":
            ap.add_argument(flag, type=float)
        elif kind == "json":
            ap.add_argument(flag, type=json.loads)
        else:
            ap.add_argument(flag)
    return ap, table


def vllm_main(argv: list[str]) -> int:
    if argv[:1] in (["--version"], ["-v"]):
        print(FAKE_VLLM_VERSION)
        return 0
    if argv[:1] != ["serve"]:
        log("usage: vllm serve MODEL [options]  (test double)")
        return 2
    ap, table = vllm_parser(FAKE_VLLM_VERSION)
    ns = ap.parse_args(argv[1:])  # unknown flags, bad choices, malformed JSON: exit 2, like the real CLI
    for (flag, sub), choices in table.get("json_choices", {}).items():
        value = getattr(ns, flag, None)
        if isinstance(value, dict) and sub in value and value[sub] not in choices:
            log(f"pydantic ValidationError: {flag}.{sub}: input should be one of {', '.join(choices)}")
            return 1
    if ns.gpu_memory_utilization is not None and not 0 < float(ns.gpu_memory_utilization) <= 1:
        log("gpu-memory-utilization must be in (0, 1]")
        return 2
    names = ns.served_model_name or [ns.model]
    key = ns.api_key or os.environ.get("VLLM_API_KEY")
    state = State("vllm", lambda: names, key, {"vllm_args": vars(ns)})
    return serve(state, ns.host or "0.0.0.0", int(ns.port or 8000))


def hf_main(argv: list[str]) -> int:
    """Stand-in for `hf download REPO --revision REV [--cache-dir DIR]`."""
    ap = argparse.ArgumentParser(prog="hf")
    sub = ap.add_subparsers(dest="cmd", required=True)
    dl = sub.add_parser("download")
    dl.add_argument("repo")
    dl.add_argument("--revision", default="main")
    dl.add_argument("--cache-dir")
    dl.add_argument("--local-dir")
    ns = ap.parse_args(argv)
    base = ns.local_dir or os.path.join(
        ns.cache_dir or os.path.join(os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"),
        "models--" + ns.repo.replace("/", "--"), "snapshots", ns.revision)
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "config.json"), "w") as fh:
        json.dump({"testdouble": True, "repo": ns.repo, "revision": ns.revision}, fh)
    print(base)
    return 0


# --------------------------------------------------------------------------- Ollama
def ollama_dir() -> str:
    return os.environ.get("OLLAMA_MODELS") or os.path.expanduser("~/.ollama/models")


def load_ollama_models() -> dict:
    path = os.path.join(ollama_dir(), "testdouble-manifests.json")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _tagged(name: str) -> str:
    return name if ":" in name else name + ":latest"


def save_ollama_model(name: str) -> None:
    name = _tagged(name)
    models = load_ollama_models()
    models[name] = {"digest": hashlib.sha256(name.encode()).hexdigest(),
                    "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(ollama_dir(), exist_ok=True)
    tmp = os.path.join(ollama_dir(), ".manifests.tmp")
    with open(tmp, "w") as fh:
        json.dump(models, fh)
    os.replace(tmp, os.path.join(ollama_dir(), "testdouble-manifests.json"))


def ollama_base() -> str:
    host = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    if "://" not in host:
        host = "http://" + host
    return host.rstrip("/")


def ollama_main(argv: list[str]) -> int:
    if argv[:1] in (["--version"], ["-v"]):
        print(f"ollama version is {VERSION}")
        return 0
    cmd = argv[0] if argv else "help"
    if cmd == "serve":
        host = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").split("://")[-1]
        addr, _, port = host.rpartition(":")
        state = State("ollama", lambda: sorted(load_ollama_models()), None, {})
        return serve(state, addr or "127.0.0.1", int(port or 11434))
    try:
        if cmd in ("list", "ls"):
            with urllib.request.urlopen(ollama_base() + "/api/tags", timeout=10) as resp:
                models = json.load(resp)["models"]
            print(f"{'NAME':<40}{'ID':<14}{'SIZE':<8}MODIFIED")
            for m in models:
                print(f"{m['name']:<40}{m['digest'][:12]:<14}{'1 B':<8}{m['modified_at']}")
            return 0
        if cmd == "pull" and len(argv) == 2:
            req = urllib.request.Request(ollama_base() + "/api/pull", data=json.dumps({"model": argv[1]}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=30) as resp:
                json.load(resp)
            print("success")
            return 0
        if cmd == "cp" and len(argv) == 3:
            return _ollama_post("/api/copy", {"source": argv[1], "destination": argv[2]},
                                f"copied '{argv[1]}' to '{argv[2]}'")
        if cmd == "create" and len(argv) == 4 and argv[2] in ("-f", "--file"):
            # like the real CLI: read the Modelfile, resolve FROM <file>.gguf, upload it, create the model
            with open(argv[3]) as fh:
                source = next((ln.split(None, 1)[1].strip() for ln in fh if ln.upper().startswith("FROM ")), "")
            if not (source.endswith(".gguf") and os.path.isfile(source)):
                log(f"Error: no Modelfile or safetensors files found ({source!r})")
                return 1
            with open(source, "rb") as fh:
                digest = "sha256:" + hashlib.sha256(fh.read()).hexdigest()
            return _ollama_post("/api/create", {"model": argv[1], "files": {os.path.basename(source): digest}},
                                "success")
    except urllib.error.HTTPError as exc:
        log(f"Error: {exc.read().decode(errors='replace')}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        log(f"Error: could not connect to ollama app, is it running? ({exc})")
        return 1
    log("usage: ollama serve|list|pull MODEL|cp SRC DST|create NAME -f MODELFILE|--version  (test double)")
    return 2


def _ollama_post(path: str, body: dict, ok: str) -> int:
    req = urllib.request.Request(ollama_base() + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        json.load(resp)
    print(ok)
    return 0


# --------------------------------------------------------------------------- LM Studio
def lms_home() -> str:
    return os.path.join(os.path.expanduser("~"), ".lmstudio", "testdouble")


def lms_read(name: str, default):
    try:
        with open(os.path.join(lms_home(), name)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def lms_write(name: str, value) -> None:
    os.makedirs(lms_home(), exist_ok=True)
    tmp = os.path.join(lms_home(), name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(value, fh)
    os.replace(tmp, os.path.join(lms_home(), name))


def lms_daemon_pid() -> int | None:
    pid = lms_read("daemon.json", {}).get("pid")
    if pid:
        try:
            os.kill(pid, 0)
            return pid
        except OSError:
            return None
    return None


def lms_daemon_loop() -> int:
    """The stand-in for llmster: serves HTTP once `lms server start` asks for it."""
    lms_write("daemon.json", {"pid": os.getpid()})
    running = None
    state = State("lms", lambda: [m["identifier"] for m in lms_read("loaded.json", [])], None, {})
    while True:
        want = lms_read("server.json", {})
        if want.get("running") and running is None:
            httpd = ThreadingHTTPServer((want.get("bind", "0.0.0.0"), int(want["port"])), make_handler(state))
            httpd.daemon_threads = True
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            running = httpd
            log(f"fake llmster serving on {want.get('bind')}:{want['port']}")
        elif not want.get("running") and running is not None:
            running.shutdown()
            running.server_close()
            running = None
        time.sleep(0.2)


def lms_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="lms")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("version")
    d = sub.add_parser("daemon")
    d.add_argument("action", choices=["up", "down", "status"])
    d.add_argument("--json", action="store_true")
    s = sub.add_parser("server")
    s.add_argument("action", choices=["start", "stop", "status"])
    s.add_argument("--port", type=int)
    s.add_argument("--bind")
    s.add_argument("--cors", action="store_true")
    s.add_argument("--json", action="store_true")
    g = sub.add_parser("get")
    g.add_argument("model")
    g.add_argument("--yes", "-y", action="store_true")
    sub.add_parser("ls").add_argument("--json", action="store_true")
    sub.add_parser("ps").add_argument("--json", action="store_true")
    ld = sub.add_parser("load")
    ld.add_argument("model")
    ld.add_argument("--identifier")
    ld.add_argument("--context-length", type=int)
    ld.add_argument("--gpu")
    ld.add_argument("--ttl", type=int)
    ld.add_argument("--parallel", type=int)
    ld.add_argument("--yes", "-y", action="store_true")
    sub.add_parser("__daemon")
    ns = ap.parse_args(argv)

    if ns.cmd == "version":
        print(f"lms {VERSION}")
        return 0
    if ns.cmd == "__daemon":
        return lms_daemon_loop()
    if ns.cmd == "daemon":
        pid = lms_daemon_pid()
        if ns.action == "up":
            if pid is None:
                lms_write("loaded.json", [])
                lms_write("server.json", {})
                with open(os.path.join(lms_home(), "daemon.log"), "ab") as logf:
                    subprocess.Popen([sys.executable, os.path.abspath(__file__), "--as", "lms", "__daemon"],
                                     stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, start_new_session=True)
                for _ in range(50):
                    if lms_daemon_pid():
                        break
                    time.sleep(0.1)
            print("llmster is running")
            return 0
        if ns.action == "down":
            if pid:
                os.kill(pid, signal.SIGTERM)
            print("llmster stopped")
            return 0
        print(json.dumps({"status": "running" if pid else "stopped"}) if ns.json
              else ("running" if pid else "not running"))
        return 0
    if ns.cmd == "get":
        have = lms_read("downloaded.json", [])
        if ns.model not in have:
            have.append(ns.model)
            lms_write("downloaded.json", have)
        print(f"downloaded {ns.model}")
        return 0
    if ns.cmd == "ls":
        have = lms_read("downloaded.json", [])
        print(json.dumps([{"modelKey": m} for m in have]) if ns.json else "\n".join(have))
        return 0
    if lms_daemon_pid() is None:
        log("llmster is not running: run `lms daemon up`")
        return 1
    if ns.cmd == "server":
        want = lms_read("server.json", {})
        if ns.action == "start":
            want = {"running": True, "port": ns.port or want.get("port") or 1234,
                    "bind": ns.bind or want.get("bind") or "0.0.0.0"}
            lms_write("server.json", want)
            print(f"Success! Server is now running on port {want['port']}")
        elif ns.action == "stop":
            want["running"] = False
            lms_write("server.json", want)
        else:
            print(json.dumps(want) if ns.json else f"server: {want}")
        return 0
    if ns.cmd == "ps":
        loaded = lms_read("loaded.json", [])
        print(json.dumps(loaded) if ns.json else "\n".join(m["identifier"] for m in loaded))
        return 0
    if ns.cmd == "load":
        if ns.model not in lms_read("downloaded.json", []):
            log(f"model not found: {ns.model}")
            return 1
        loaded = [m for m in lms_read("loaded.json", []) if m["identifier"] != (ns.identifier or ns.model)]
        loaded.append({"identifier": ns.identifier or ns.model, "model": ns.model,
                       "context_length": ns.context_length, "parallel": ns.parallel, "gpu": ns.gpu})
        lms_write("loaded.json", loaded)
        print(f"loaded {ns.model} as {ns.identifier or ns.model}")
        return 0
    return 2


def main() -> int:
    argv = sys.argv[1:]
    name = os.path.basename(sys.argv[0])
    if argv[:1] == ["--as"] and len(argv) > 1:
        name, argv = argv[1], argv[2:]
    table = {"vllm": vllm_main, "hf": hf_main, "huggingface-cli": hf_main, "ollama": ollama_main,
             "lms": lms_main}
    for key, func in table.items():
        if name == key or name.startswith(key + "-") or name.startswith(key + "."):
            return func(argv)
    log(f"fake_engine: unknown personality {name!r}; use --as vllm|hf|ollama|lms")
    return 2


if __name__ == "__main__":
    sys.exit(main())
