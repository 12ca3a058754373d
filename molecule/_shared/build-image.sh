#!/usr/bin/env bash
# Build the systemd test image used by every Molecule scenario and by the lab.
#
#   molecule/_shared/build-image.sh            # Debian 12 (bookworm), the default
#   HOMELAB_IMAGE_SUITE=noble HOMELAB_IMAGE_MIRROR=http://archive.ubuntu.com/ubuntu \
#     molecule/_shared/build-image.sh          # Ubuntu 24.04, where such a mirror is reachable
#   HOMELAB_IMAGE_REBUILD=1 molecule/_shared/build-image.sh   # force a rebuild
#
# Base images cannot be pulled from a registry here, so the root filesystem is made with
# debootstrap and turned into an image with `podman import`. The build is idempotent (an
# existing image is reused), cached (the debootstrap tarball is kept), and serialised with
# flock so parallel callers wait instead of racing.
set -euo pipefail

SUITE="${HOMELAB_IMAGE_SUITE:-bookworm}"
case "$SUITE" in
  bookworm) DEFAULT_TAG="localhost/homelab-debian12:latest"; DEFAULT_MIRROR="http://deb.debian.org/debian" ;;
  noble)    DEFAULT_TAG="localhost/homelab-ubuntu2404:latest"; DEFAULT_MIRROR="http://archive.ubuntu.com/ubuntu" ;;
  *) echo "build-image: unsupported suite '$SUITE' (bookworm or noble)" >&2; exit 2 ;;
esac
TAG="${HOMELAB_IMAGE:-$DEFAULT_TAG}"
MIRROR="${HOMELAB_IMAGE_MIRROR:-$DEFAULT_MIRROR}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_DIR="${HOMELAB_CACHE_DIR:-$REPO_ROOT/.cache}/image"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO_ROOT/molecule/_shared/containers.conf}"

# Packages every scenario relies on: systemd as PID 1, Python for Ansible, and the small
# tools the testinfra checks and the roles' health waits use.
PACKAGES="systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,sudo,curl,ca-certificates,iproute2,procps,nftables,iputils-ping,less,gnupg,locales"

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
flock 9

if [[ -z "${HOMELAB_IMAGE_REBUILD:-}" ]] && podman image exists "$TAG"; then
  echo "build-image: $TAG already present"
  exit 0
fi

for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "build-image: '$tool' is missing (apt-get install $tool)" >&2; exit 1; }
done

ROOTFS="$(mktemp -d /var/tmp/homelab-rootfs.XXXXXX)"
cleanup() { rm -rf "$ROOTFS"; }
trap cleanup EXIT

# debootstrap's own arguments: Debian 12's debootstrap (1.0.128) has no `noble` script and no Ubuntu keyring.
# Ubuntu suites since gutsy share one script (newer debootstraps link noble -> gutsy), so point at it; the
# archive key comes from Ubuntu's ubuntu-keyring package, fetched once and checked against a pinned SHA256
# (the Packages index of noble/main lists this hash), so the Release signature is still verified.
DEBOOTSTRAP_OPTS=(--variant=minbase --include="$PACKAGES")
DEBOOTSTRAP_SCRIPT=()
if [[ "$SUITE" == noble ]]; then
  KEYRING_DEB="$CACHE_DIR/ubuntu-keyring_2023.11.28.1_all.deb"
  KEYRING_SHA256=36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8
  if ! echo "$KEYRING_SHA256  $KEYRING_DEB" | sha256sum -c --status 2>/dev/null; then
    curl -fsSL -o "$KEYRING_DEB.tmp" "$MIRROR/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
    echo "$KEYRING_SHA256  $KEYRING_DEB.tmp" | sha256sum -c --status \
      || { echo "build-image: ubuntu-keyring .deb does not match its pinned SHA256" >&2; exit 1; }
    mv "$KEYRING_DEB.tmp" "$KEYRING_DEB"
  fi
  rm -rf "$CACHE_DIR/ubuntu-keyring" && dpkg-deb -x "$KEYRING_DEB" "$CACHE_DIR/ubuntu-keyring"
  # python3-venv is in universe on Ubuntu (main on Debian); a stock Ubuntu server enables universe too.
  DEBOOTSTRAP_OPTS+=(--components=main,universe)
  DEBOOTSTRAP_OPTS+=(--keyring="$CACHE_DIR/ubuntu-keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg")
  [[ -e /usr/share/debootstrap/scripts/noble ]] || DEBOOTSTRAP_SCRIPT=(/usr/share/debootstrap/scripts/gutsy)
fi

TARBALL="$CACHE_DIR/debootstrap-$SUITE.tgz"
echo "build-image: debootstrap $SUITE from $MIRROR (takes a few minutes the first time)"
if [[ ! -s "$TARBALL" ]]; then
  # --make-tarball downloads the .debs once; later builds unpack from the cache.
  debootstrap "${DEBOOTSTRAP_OPTS[@]}" --make-tarball="$TARBALL.tmp" "$SUITE" "$ROOTFS" "$MIRROR" \
    "${DEBOOTSTRAP_SCRIPT[@]}" >/dev/null
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$ROOTFS"; ROOTFS="$(mktemp -d /var/tmp/homelab-rootfs.XXXXXX)"
fi
debootstrap "${DEBOOTSTRAP_OPTS[@]}" --unpack-tarball="$TARBALL" "$SUITE" "$ROOTFS" "$MIRROR" \
  "${DEBOOTSTRAP_SCRIPT[@]}" >/dev/null

# Trust the same extra CAs as this machine: outbound HTTPS may be re-signed by a proxy CA
# (the same holds for users behind a corporate TLS proxy). Without this, pip inside the
# containers fails certificate checks.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
fi
chroot "$ROOTFS" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || true

# Container hygiene: no getty on a console that isn't there, no units that need hardware.
chroot "$ROOTFS" /bin/sh -c '
  set -e
  echo "en_US.UTF-8 UTF-8" > /etc/locale.gen && locale-gen >/dev/null 2>&1 || true
  systemctl mask getty.target console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-remount-fs.service sys-kernel-debug.mount \
    systemd-firstboot.service >/dev/null 2>&1 || true
  rm -f /etc/machine-id /var/lib/dbus/machine-id && touch /etc/machine-id
  printf "%s\n" "# Written by homelab-ai build-image.sh: sources for apt inside test containers" > /etc/apt/sources.list.d/.keep
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
  # no package lists: make them look ancient, or apt cache_valid_time would trust the empty directory
  touch -d @0 /var/lib/apt/lists
'
if [[ "$SUITE" == bookworm ]]; then
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    echo "deb http://deb.debian.org/debian-security $SUITE-security main"
  } > "$ROOTFS/etc/apt/sources.list"
else
  # Ubuntu: `restricted` carries the NVIDIA driver packages (nvidia-driver-*, linux-modules-nvidia-*),
  # -updates/-security their current versions, as on an installed Ubuntu 24.04 server (which enables universe).
  {
    echo "deb $MIRROR $SUITE main restricted universe"
    echo "deb $MIRROR $SUITE-updates main restricted universe"
    echo "deb $MIRROR $SUITE-security main restricted universe"
  } > "$ROOTFS/etc/apt/sources.list"
  # Ubuntu ships /etc/apt/sources.list.d/ubuntu.sources in newer images; debootstrap does not, keep one source.
  rm -f "$ROOTFS/etc/apt/sources.list.d/ubuntu.sources"
fi

echo "build-image: importing as $TAG"
tar -C "$ROOTFS" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=podman' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  - "$TAG" >/dev/null
echo "build-image: done ($TAG)"
