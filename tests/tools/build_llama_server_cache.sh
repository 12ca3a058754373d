#!/usr/bin/env bash
# Build llama.cpp's llama-server once on the control node and cache it, so that Molecule, the lab
# and CI never rebuild it. Source: the llama.cpp tree vendored inside the llama-cpp-python sdist
# from PyPI (pinned version). Output:
#   ${LLAMA_SERVER_CACHE:-<repo>/.cache/llama-server}/<version>/llama-server
# Prints the binary path on its last line. Safe to run concurrently (flock) and repeatedly.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
cache_root=${LLAMA_SERVER_CACHE:-$repo/.cache/llama-server}
dir="$cache_root/$version"
bin="$dir/llama-server"
jobs=${LLAMA_SERVER_BUILD_JOBS:-2}

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

pip=${PIP:-$repo/.venv/bin/pip}
work="$dir/work"
mkdir -p "$work"
if ! ls "$work"/llama_cpp_python-"$version".tar.gz >/dev/null 2>&1; then
  "$pip" download --no-deps --no-binary :all: --dest "$work" "llama-cpp-python==$version" >&2
fi
tarball=$(ls "$work"/llama_cpp_python-"$version".tar.gz)
sha256sum "$tarball" >"$dir/sdist.sha256"
if [[ ! -d "$work/src/llama_cpp_python-$version" ]]; then
  mkdir -p "$work/src"
  tar -xzf "$tarball" -C "$work/src"
fi

nice -n 10 "$repo/roles/llama_server/files/build-llama-server.sh" \
  "$work/src/llama_cpp_python-$version/vendor/llama.cpp" "$work/build" "$bin" off "$jobs" >&2

# Keep the cache small: the binary and the checksum of the sdist it came from are enough.
rm -rf "$work/build" "$work/src"
echo "$bin"
