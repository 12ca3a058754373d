#!/usr/bin/env bash
# Build the upstream llama.cpp `llama-server` binary from a llama.cpp source tree with cmake.
# Used in two places:
#   * by the llama_server role on a GPU host (install method "source"), and
#   * on the control node by tests/tools/build_llama_server_cache.sh, which feeds the role's
#     "binary" install method and the Molecule/lab scenarios.
#
# usage: build-llama-server.sh SRC_DIR BUILD_DIR OUT_BINARY [cuda:on|off] [jobs]
# The result is copied to OUT_BINARY (atomic rename). Exits 0 without work if OUT_BINARY exists.
set -euo pipefail

src=${1:?source dir (the llama.cpp tree)}
build=${2:?build dir}
out=${3:?output binary path}
cuda=${4:-off}
jobs=${5:-2}

if [[ -x "$out" ]]; then
  echo "llama-server already built: $out"
  exit 0
fi
[[ -f "$src/CMakeLists.txt" && -d "$src/tools/server" ]] || {
  echo "not a llama.cpp tree with tools/server: $src" >&2
  exit 2
}

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

cuda_flag=OFF
[[ "$cuda" == "on" ]] && cuda_flag=ON

cmake -S "$src" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF \
  -DGGML_CUDA="$cuda_flag" \
  -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DBUILD_SHARED_LIBS=OFF
cmake --build "$build" --target llama-server -j "$jobs"

mkdir -p "$(dirname "$out")"
install -m 0755 "$build/bin/llama-server" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
"$out" --version 2>&1 | head -n 3 || true
echo "built $out"
