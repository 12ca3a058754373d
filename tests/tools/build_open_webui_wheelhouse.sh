#!/usr/bin/env bash
# Build Open WebUI's wheelhouse once on the control node and cache it, so Molecule and the lab install the role
# from local wheels (open_webui_wheelhouse_archive) instead of PyPI: the same curated, pinned requirements as
# roles/open_webui (no torch, no CUDA) plus open-webui itself, as wheels for this machine's Python and platform
# (the target must match: Debian 12's python3 is 3.11, x86_64). Output, one uncompressed tar (wheels are already
# compressed; one file travels faster than 150):
#   ${OPEN_WEBUI_WHEELS_CACHE:-$HOME/.cache/homelab-ai/open-webui-wheels}/<version>/wheelhouse-<req hash>.tar
# Prints that path on its last line. Safe to run concurrently (flock) and repeatedly (a no-op once built).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
req="$repo/roles/open_webui/files/requirements.txt"
version=${OPEN_WEBUI_VERSION:-$(sed -n 's/^open_webui_version: *"\{0,1\}\([0-9.]*\)"\{0,1\}$/\1/p' \
  "$repo/roles/open_webui/defaults/main.yml")}
cache_root=${OPEN_WEBUI_WHEELS_CACHE:-$HOME/.cache/homelab-ai/open-webui-wheels}
dir="$cache_root/$version"
archive="$dir/wheelhouse-$( (cat "$req"; echo "open-webui==$version") | sha256sum | cut -c1-16).tar"
python=${PYTHON:-python3}

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [[ -s "$archive" ]]; then
  echo "$archive"
  exit 0
fi

work=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# pip wheel: binary wheels are downloaded as they are; an sdist-only pin is built into a wheel here, once.
"$python" -m pip wheel -q --wheel-dir "$work/wheels" -r "$req" >&2
"$python" -m pip wheel -q --no-deps --wheel-dir "$work/wheels" "open-webui==$version" >&2
# Pins behind an environment marker this Python does not meet may still apply on the target (async-timeout below
# CPython 3.11.3: Debian 12 has 3.11.2): their wheels go in too; pip on the target evaluates the markers itself.
sed -n 's/^\([A-Za-z0-9_.-]*==[^ ;]*\) *;.*/\1/p' "$req" | while read -r spec; do
  "$python" -m pip wheel -q --no-deps --wheel-dir "$work/wheels" "$spec" >&2
done
# Deterministic archive: sorted names, fixed owner and mtime, so an unchanged wheelhouse is byte-identical and
# the role's copy stays unchanged (idempotence).
(cd "$work/wheels" && find . -maxdepth 1 -name '*.whl' -printf '%P\n' | LC_ALL=C sort |
  tar --create --file "$work/wheelhouse.tar" --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
      --mode=a+rX,u+w,go-w --verbatim-files-from --files-from=-)
rm -f "$dir"/wheelhouse-*.tar
mv "$work/wheelhouse.tar" "$archive"
echo "$archive"
