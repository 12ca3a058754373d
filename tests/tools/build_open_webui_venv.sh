#!/usr/bin/env bash
# Build the Open WebUI virtualenv once on the control node and cache it, so the browser test, the lab and CI
# install it from PyPI only once. Same install as roles/open_webui: the curated, pinned requirements (no torch,
# no CUDA), then open-webui itself with --no-deps. Output:
#   ${OPEN_WEBUI_CACHE:-$HOME/.cache/homelab-ai/open-webui}/<version>/venv/bin/open-webui
# Prints that path on its last line. Safe to run concurrently (flock) and repeatedly.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
req="$repo/roles/open_webui/files/requirements.txt"
version=${OPEN_WEBUI_VERSION:-$(sed -n 's/^open_webui_version: *"\{0,1\}\([0-9.]*\)"\{0,1\}$/\1/p' \
  "$repo/roles/open_webui/defaults/main.yml")}
cache_root=${OPEN_WEBUI_CACHE:-$HOME/.cache/homelab-ai/open-webui}
dir="$cache_root/$version"
venv="$dir/venv"
stamp="$dir/.installed-$(sha256sum "$req" | cut -c1-16)"

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [[ -f "$stamp" && -x "$venv/bin/open-webui" ]]; then
  echo "$venv/bin/open-webui"
  exit 0
fi

rm -rf "$venv" "$dir"/.installed-*
${PYTHON:-python3} -m venv "$venv"
"$venv/bin/pip" install -q -r "$req" >&2
"$venv/bin/pip" install -q --no-deps "open-webui==$version" >&2
touch "$stamp"
echo "$venv/bin/open-webui"
