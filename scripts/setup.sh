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
  postgresql
  fonts-dejavu-core fonts-droid-fallback  # invoice PDFs: Latin etc., and CJK names
)
# --lxd: also what the lxd driver's tests run their own LXD daemons with (scripts/test).
if [ "${1:-}" = --lxd ]; then
  PACKAGES+=(lxd lxd-client btrfs-progs dnsmasq-base)
fi
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
# --lxd: Incus too (LXD's fork, the same driver), from Debian's backports: Debian 12 has no
# Incus of its own. Only incus-base (the daemon and client), none of its VM parts; backports
# are never preferred for anything else.
if [ "${1:-}" = --lxd ] && ! dpkg-query -W -f='${Status}' incus-base 2>/dev/null | grep -q "install ok installed"; then
  echo "setup: installing incus-base from bookworm-backports" >&2
  cat > /etc/apt/sources.list.d/labyard-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -t bookworm-backports incus-base >/dev/null
fi

# Kernel limits a host full of machines outgrows; the same minimums as MINIMUMS in
# labyard/runtime/local/host_limits.py (which says why each, and raises them at driver start
# too). Per idle machine: ~7 inotify instances, 5-20 tasks, ~3 neighbour entries (past
# gc_thresh3, Debian's 1,024, new machines are unreachable), a session keyring per SSH login
# for its uid. A value already higher is kept.
LIMITS=(
  fs.inotify.max_user_instances=65536
  fs.inotify.max_user_watches=1048576
  kernel.pid_max=4194304
  net.ipv4.neigh.default.gc_thresh1=8192
  net.ipv4.neigh.default.gc_thresh2=32768
  net.ipv4.neigh.default.gc_thresh3=65536
  net.ipv6.neigh.default.gc_thresh1=8192
  net.ipv6.neigh.default.gc_thresh2=32768
  net.ipv6.neigh.default.gc_thresh3=65536
  kernel.keys.maxkeys=2000
  kernel.keys.maxbytes=2000000
  fs.aio-max-nr=524288
)
sysctl_conf=/etc/sysctl.d/60-labyard.conf
: > "$sysctl_conf.new"
for limit in "${LIMITS[@]}"; do
  name=${limit%%=*} minimum=${limit#*=}
  current=$(sysctl -n "$name" 2>/dev/null) || continue  # not on this kernel (no IPv6, say)
  echo "$name = $(( current > minimum ? current : minimum ))" >> "$sysctl_conf.new"
done
mv "$sysctl_conf.new" "$sysctl_conf"
sysctl -q -p "$sysctl_conf" >/dev/null || true

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Exactly the versions in requirements.lock (hash-checked; `scripts/lock` regenerates it),
# then labyard itself, built with the locked setuptools rather than the newest one.
pip_log=$(mktemp)
pip=(.venv/bin/pip install -q --disable-pip-version-check)
if ! { "${pip[@]}" --require-hashes -r requirements.lock &&
  "${pip[@]}" --no-deps --no-build-isolation -e .; } >"$pip_log" 2>&1; then
  cat "$pip_log" >&2
  echo "setup: installing the Python packages from requirements.lock failed" >&2
  exit 1
fi
rm -f "$pip_log"

# The web UI's browser packages (xterm.js, uPlot), served by the server from node_modules/.
# Node's own packaging (e.g. NodeSource's nodejs, which bundles npm) counts as present.
if ! command -v npm >/dev/null; then
  echo "setup: installing nodejs npm" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
# Re-run `npm ci` only when the lock file changed since the last install.
if ! cmp -s package-lock.json node_modules/.labyard-installed-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json node_modules/.labyard-installed-lock
fi
# Browser tests drive Debian's chromium (never a downloaded one: `playwright install` is not used).
if ! command -v chromium >/dev/null; then
  echo "setup: installing chromium" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

.venv/bin/labyard image build linux docker >/dev/null
echo "setup: done" >&2
