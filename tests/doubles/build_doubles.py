#!/usr/bin/env python3
"""Package the TEST DOUBLE fake engine (tests/doubles/fake_engine.py) in the shapes the
engine roles install from, so Molecule can point the roles' own source variables at them:

  homelab_fake_vllm-<v>-py3-none-any.whl   vllm_pip_spec / vllm_pip_find_links (console scripts vllm, hf)
  ollama-testdouble-linux-amd64.tgz        ollama_archive_url / ollama_archive_checksum (bin/ollama)
  lms-testdouble-linux-x64.tgz             lmstudio_archive_url / lmstudio_archive_checksum (bin/lms)

Output is deterministic (fixed timestamps) so checksums stay stable between runs.
Prints a JSON object {name: {"path": ..., "sha256": ...}}.
usage: build_doubles.py [OUT_DIR]   (default: <repo>/.cache/doubles)
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "fake_engine.py"
WHEEL_NAME = "homelab_fake_vllm"
WHEEL_VERSION = "0.0.1"
EPOCH = (2020, 1, 1, 0, 0, 0)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_wheel(out: Path) -> Path:
    dist = f"{WHEEL_NAME}-{WHEEL_VERSION}.dist-info"
    files = {
        "fake_engine.py": SRC.read_bytes(),
        # the pinned vLLM versions' flag table, shared with inventory validation (the double imports it)
        "vllm_flags.py": (HERE.parents[1] / "plugins" / "filter" / "vllm_flags.py").read_bytes(),
        f"{dist}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: homelab-fake-vllm\nVersion: {WHEEL_VERSION}\n"
            "Summary: TEST DOUBLE standing in for vLLM in Molecule scenarios (homelab-ai)\n").encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: homelab-build-doubles\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[console_scripts]\nvllm = fake_engine:main\nhf = fake_engine:main\n",
        f"{dist}/top_level.txt": b"fake_engine\nvllm_flags\n",
    }
    record_lines = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{name},sha256={digest},{len(data)}")
    record_lines.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    path = out / f"{WHEEL_NAME}-{WHEEL_VERSION}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    write_if_changed(path, buf.getvalue())
    return path


def write_tarball(out: Path, filename: str, members: dict[str, tuple[bytes, int]]) -> Path:
    buf = io.BytesIO()
    # gzip header mtime fixed through GzipFile so the bytes are reproducible
    import gzip
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            dirs = sorted({str(Path(n).parent) for n in members if str(Path(n).parent) != "."})
            for d in dirs:
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1577836800
                tf.addfile(info)
            for name, (data, mode) in sorted(members.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 1577836800
                tf.addfile(info, io.BytesIO(data))
    path = out / filename
    write_if_changed(path, buf.getvalue())
    return path


def write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE.parent.parent / ".cache" / "doubles"
    out.mkdir(parents=True, exist_ok=True)
    script = SRC.read_bytes()
    note = b"TEST DOUBLE: fake engine for Molecule scenarios. Not the real product.\n"
    built = {
        "vllm_wheel": write_wheel(out),
        "ollama_archive": write_tarball(out, "ollama-testdouble-linux-amd64.tgz", {
            "bin/ollama": (script, 0o755), "lib/ollama/TESTDOUBLE.txt": (note, 0o644)}),
        "lms_archive": write_tarball(out, "lms-testdouble-linux-x64.tgz", {
            "bin/lms": (script, 0o755), "TESTDOUBLE.txt": (note, 0o644)}),
    }
    result = {k: {"path": str(p), "sha256": sha256(p)} for k, p in built.items()}
    (out / "manifest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
