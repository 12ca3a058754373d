"""``homelab-router keys ensure``: an app's key kept in a root-only environment file, idempotently.

For a service on the router's own host (Open WebUI on the gateway): configuration management runs

    homelab-router keys ensure --config /etc/homelab-router/config.yaml --app open-webui --rpm 120 \\
        --env-file /etc/open-webui/router-key.env --env-name OPENAI_API_KEYS --env-name RAG_OPENAI_API_KEY

and the service's unit reads that file (systemd ``EnvironmentFile=``). If the file already holds a token that is the
app's active key in the store, nothing changes. Otherwise the app gets a fresh key (any active one revoked in the
same transaction; the limits given here apply) and the file is replaced atomically (mode 0600, owned by whoever runs
this: root under Ansible). The secret never reaches a command line, stdout or a log: stdout is one JSON line
``{"app", "key_id", "changed", "action"}`` (action: unchanged, created, rotated, rewritten) for ``changed_when``.

Run as root, the store is opened with the store file's owner as effective user (the router's own user), so SQLite's
journal files never end up owned by root; the environment file is read and written as root.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional

from ..access.store import Store, StoreError, split_token

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _valid_app(app: str) -> bool:     # the store's own rule (Store.create_key)
    return bool(app) and all(c.isalnum() or c in "-_." for c in app)


def read_env_file(path: str) -> dict[str, str]:
    """NAME=value lines of a systemd environment file (comments and blank lines skipped; no quoting is written)."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line or line.startswith(("#", ";")) or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    except FileNotFoundError:
        pass
    return out


def write_env_file(path: str, names: list[str], token: str) -> None:
    """Replace ``path`` atomically: a 0600 temporary file in the same directory, fsync, rename, fsync the dir."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".router-key.", dir=d)     # mkstemp: O_EXCL, mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write("# Written by `homelab-router keys ensure`: this app's router key. Do not edit.\n")
            fh.writelines(f"{n}={token}\n" for n in names)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextmanager
def _as_store_owner(store_path: str) -> Iterator[None]:
    """As root: the store's owner as effective uid/gid while the block runs (then root again)."""
    if os.geteuid() != 0:
        yield
        return
    probe = store_path if os.path.exists(store_path) else os.path.dirname(store_path)
    st = os.stat(probe)
    if st.st_uid == 0:
        yield
        return
    egid = os.getegid()
    os.setegid(st.st_gid)
    os.seteuid(st.st_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(egid)


def _file_token(env: dict[str, str], names: list[str]) -> Optional[str]:
    vals = {env[n] for n in names if env.get(n)}     # a name missing: the file is rewritten, the key kept
    if len(vals) != 1:
        return None
    tok = vals.pop()
    return tok if tok and split_token(tok) else None


def _key_in_store(store: Store, a: argparse.Namespace, token: Optional[str]):
    """(record, secret or None, action): the active key when the token is it, else a new one."""
    rec = store.get_active(a.app)
    if token and rec is not None and split_token(token)[0] == rec.kid and rec.verify(token):
        return rec, None, "unchanged"
    new, secret = store.create_key(a.app, routes=a.routes, models=a.models, rpm=a.rpm, replace=True,
                                   tokens_per_day=a.tokens_per_day, tokens_per_month=a.tokens_per_month)
    return new, secret, ("rotated" if rec is not None else "created")


def cmd_ensure(a: argparse.Namespace) -> int:
    from .access import _csv, _err, _load
    from ..access.config import resolve_store_path, settings_from
    from ..access.controller import resolve_models
    if not _valid_app(a.app):
        return _err(f"invalid app name {a.app!r}: use letters, digits, '-', '_' or '.'")
    names = a.env_name or ["OPENAI_API_KEY"]
    bad = [n for n in names if not _ENV_NAME.fullmatch(n)]
    if bad:
        return _err(f"invalid --env-name {', '.join(map(repr, bad))}: a shell variable name ([A-Za-z_][A-Za-z0-9_]*)")
    env_dir = os.path.dirname(os.path.abspath(a.env_file))
    if not os.path.isdir(env_dir):
        return _err(f"--env-file {a.env_file}: directory {env_dir} does not exist")
    cfg = _load(a.config)
    a.routes, a.models = _csv(a.routes), _csv(a.models)
    if a.routes is not None and (not a.routes or any(r not in cfg.routes for r in a.routes)):
        return _err(f"unknown route(s) in {','.join(a.routes) or '(empty list)'}; routes in the config: "
                    f"{', '.join(cfg.routes)}")
    if a.models is not None:
        _, unknown = resolve_models(a.models, cfg)
        if unknown or not a.models:
            return _err(f"unknown model name(s) {', '.join(unknown) or '(empty list)'}")
    try:
        env = read_env_file(a.env_file)
    except (OSError, UnicodeDecodeError) as e:
        return _err(f"--env-file {a.env_file}: cannot read it: {e}")
    token = _file_token(env, names)
    path = resolve_store_path(settings_from(cfg), cfg)
    try:
        with _as_store_owner(path):
            store = Store(path)
            try:
                rec, secret, action = _key_in_store(store, a, token)
            finally:
                store.close()
    except (StoreError, OSError) as e:
        return _err(f"store {path}: {e}", 1)
    if secret is None and (set(env) != set(names) or os.stat(a.env_file).st_mode & 0o077):
        secret, action = token, "rewritten"     # the key is right but the file is not exactly ours (names, mode)
    if secret is not None:
        write_env_file(a.env_file, names, secret)
    print(json.dumps({"app": rec.app, "key_id": rec.kid, "changed": action != "unchanged", "action": action}))
    return 0


def register(ksub, common) -> None:
    from .access import _pos_int
    p = ksub.add_parser("ensure", help="keep an app's key in a 0600 environment file (create or replace it only "
                                       "when the file's key is not the app's active key); never prints the secret")
    common(p)
    p.add_argument("--app", required=True, help="app name (one active key per app)")
    p.add_argument("--env-file", required=True, help="the environment file to keep (NAME=secret lines, mode 0600)")
    p.add_argument("--env-name", action="append", metavar="NAME",
                   help="variable name for the secret; repeat for several (default: OPENAI_API_KEY)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--routes", help="comma-separated routes a new key may use (default: all)")
    g.add_argument("--models", help="comma-separated model names for a new key")
    p.add_argument("--rpm", type=_pos_int, help="requests per minute (a new key)")
    p.add_argument("--tokens-per-day", type=_pos_int, help="token budget per UTC day (a new key)")
    p.add_argument("--tokens-per-month", type=_pos_int, help="token budget per UTC month (a new key)")
    p.set_defaults(func=cmd_ensure)
