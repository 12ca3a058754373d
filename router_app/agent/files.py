"""Read-only file access for the hub's `list_files` / `read_file` commands (standard library only; deployed next to
homelab_agent.py by roles/homelab_agent).

Only paths inside the node's allowlist (`infra_paths` in agent.json, from the inventory's homelab_agent_infra_paths)
are served. Every check is made twice: on the path as given (absolute, normalized: no `..`, no `//`, no relative
parts) and on its `os.path.realpath`, so a symlink inside an allowlisted directory cannot lead outside it.
Refused whatever the allowlist says ("secret-looking"):

* names that look like secrets: `*.env`, `*.key`, private SSH keys, `shadow`/`gshadow`, `*.token`, `*secret*`...;
* files owned by root with no group/other permission bits (`mode & 0o077 == 0`, e.g. the 0600 env files and tokens
  the roles write): the repository's convention for a secret.

Also refused: anything that is not a regular file (devices, FIFOs, sockets), unreadable files. A read is capped at
MAX_READ bytes (`truncated` says so); content is UTF-8 text, or base64 when it is not valid UTF-8 (or when
JSON would escape it to more than base64's size), so a result stays under about 4/3 of MAX_READ.
The hub imports `path_problem`, `within` and `secret_name` from here, so both sides apply the same rules.
"""
from __future__ import annotations

import base64
import fnmatch
import json
import os
import posixpath
import stat

MAX_READ = 256 * 1024          # bytes one read_file may return
DEFAULT_READ = 64 * 1024
MAX_ENTRIES = 500              # entries one list_files may return
MAX_PATH = 4096
SECRET_NAMES = ("*.env", ".env", "*.key", "*.token", "*secret*", "*password*", "*passwd*", "shadow", "shadow-",
                "gshadow", "gshadow-", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk",
                "ssh_host_*_key", "*.p12", "*.pfx", "*.keytab", "*.vault", "vault.yml", "*.kdbx")


class FileRefused(Exception):
    """Refused by policy (outside the allowlist, secret-looking, not a regular file): status `refused`."""


def path_problem(path) -> str | None:
    """Why `path` is not a clean absolute path, or None."""
    if not isinstance(path, str) or not path:
        return "path must be a non-empty string"
    if len(path) > MAX_PATH or "\x00" in path:
        return f"path must be at most {MAX_PATH} characters, without NUL"
    if not path.startswith("/"):
        return f"path {path!r} must be absolute"
    if ".." in path.split("/"):
        return f"path {path!r} must not contain '..'"
    if posixpath.normpath(path) != path and path != "/":
        return f"path {path!r} is not normalized (no '//', '/./' or trailing '/')"
    return None


def within(path: str, allowlist) -> bool:
    """Textual: path is an allowlist entry or lies under an entry (a directory)."""
    for a in allowlist or ():
        if not isinstance(a, str) or path_problem(a):
            continue
        if path == a or path.startswith(a.rstrip("/") + "/"):
            return True
    return False


def secret_name(path: str) -> bool:
    base = posixpath.basename(path).lower()
    return any(fnmatch.fnmatchcase(base, p) for p in SECRET_NAMES)


def secret_mode(st: os.stat_result) -> bool:
    """Owned by root and closed to group and others (0600, 0400, 0700): the convention for a secret here."""
    return st.st_uid == 0 and stat.S_ISREG(st.st_mode) and (st.st_mode & 0o077) == 0


def resolve(path, allowlist) -> str:
    """The real path of an allowed `path`, or FileRefused."""
    why = path_problem(path)
    if why:
        raise FileRefused(why)
    if not within(path, allowlist):
        raise FileRefused(f"{path} is outside this node's allowlist ({', '.join(allowlist or []) or 'empty'})")
    real = os.path.realpath(path)
    real_allow = [os.path.realpath(a) for a in allowlist if isinstance(a, str) and not path_problem(a)]
    if not within(real, real_allow):
        raise FileRefused(f"{path} resolves to {real}, outside this node's allowlist (symlink escape)")
    if secret_name(path) or secret_name(real):
        raise FileRefused(f"{path} looks like a secret (its name); secrets are never served")
    return real


def _entry(path: str, allowlist) -> dict:
    item: dict = {"path": path}
    try:
        real = resolve(path, allowlist)
        st = os.stat(real)
    except FileRefused as exc:
        return {**item, "refused": str(exc)}
    except OSError as exc:
        return {**item, "error": exc.strerror or str(exc)}
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    item.update(type=kind, size=st.st_size if kind == "file" else None, mtime=st.st_mtime,
                mode=oct(stat.S_IMODE(st.st_mode)))
    if real != path:
        item["real_path"] = real
    if secret_mode(st):
        item["refused"] = "secret-looking (root-owned, no group/other access)"
    elif kind == "other":
        item["refused"] = "not a regular file"
    return item


def list_files(path, allowlist) -> dict:
    """One allowlisted file, or the entries of an allowlisted directory (one level, sorted, capped)."""
    real = resolve(path, allowlist)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise FileRefused(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        return {"path": path, "type": "file", "entries": [_entry(path, allowlist)], "truncated": False}
    try:
        names = sorted(os.listdir(real))
    except OSError as exc:
        raise FileRefused(f"{path}: {exc.strerror or exc}") from None
    base = path.rstrip("/")
    entries = [_entry(f"{base}/{n}", allowlist) for n in names[:MAX_ENTRIES]]
    return {"path": path, "type": "dir", "entries": entries, "truncated": len(names) > MAX_ENTRIES,
            "count": len(names)}


def read_file(path, allowlist, max_bytes=DEFAULT_READ) -> dict:
    real = resolve(path, allowlist)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1 <= max_bytes <= MAX_READ:
        raise FileRefused(f"max_bytes must be an integer in [1, {MAX_READ}]")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefused(f"{path}: cannot open: {exc.strerror or exc}") from None
    st = os.fstat(fd)                      # of what was opened: no swap between the checks and the read
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileRefused(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if secret_mode(st):
            raise FileRefused(f"{path} looks like a secret (owned by root, mode {oct(stat.S_IMODE(st.st_mode))}: "
                              "no group/other access); secrets are never served")
        data = fh.read(max_bytes + 1)
    out = {"path": path, "size": st.st_size, "mtime": st.st_mtime, "mode": oct(stat.S_IMODE(st.st_mode)),
           "truncated": len(data) > max_bytes}
    if real != path:
        out["real_path"] = real
    data = data[:max_bytes]
    try:
        text = data.decode("utf-8")
        # JSON escapes control characters six-fold: then base64 is the smaller, bounded form
        if len(json.dumps(text, ensure_ascii=False)) > len(data) * 4 // 3 + 8:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "mostly control characters")
        out.update(encoding="utf-8", content=text)
    except UnicodeDecodeError:
        out.update(encoding="base64", content=base64.b64encode(data).decode("ascii"))
    out["bytes"] = len(data)
    return out


def run(cmd: dict, allowlist) -> dict:
    """A list_files / read_file command -> a result with `status` (succeeded | refused)."""
    args = cmd.get("args") or {}
    try:
        if cmd["kind"] == "list_files":
            res = list_files(args.get("path"), allowlist)
        else:
            res = read_file(args.get("path"), allowlist, args.get("max_bytes", DEFAULT_READ))
    except FileRefused as exc:
        return {"status": "refused", "summary": str(exc)}
    n = len(res.get("entries", [])) if cmd["kind"] == "list_files" else res.get("bytes")
    return {"status": "succeeded", "summary": f"{cmd['kind']} {args.get('path')}: {n}", **res}
