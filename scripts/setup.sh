#!/usr/bin/env bash
# Install everything labyard needs on a Debian 12 host, as root. Safe to run again:
# it installs only what is missing and rebuilds an image only when its recipe changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (labyard creates containers, mounts and network namespaces)" >&2
  exit 1
fi

PACKAGES=(
  runc mmdebstrap iproute2 nftables e2fsprogs util-linux procps
  openssh-client openssh-server python3-venv ca-certificates
)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: installing openssh-server must not start a host sshd.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored" >&2 || true
.venv/bin/python -c "import labyard" # fail here, not later, if the install did not work

.venv/bin/labyard image build linux docker >/dev/null
echo "setup: done" >&2
