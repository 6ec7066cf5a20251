#!/bin/bash
# Install everything the MTA Hardening Lab needs on Debian 12, then start the lab and
# JupyterLab. Run as root from the repository:
#
#   sudo ./setup.sh                 install, start the lab, open JupyterLab on the course (127.0.0.1:8888)
#   sudo ./setup.sh --install-only  install only (what the test command uses)
#
# Idempotent: run it again at any time; it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (sudo ./setup.sh): the lab uses namespaces, mounts and containers" >&2
    exit 1
fi
if ! grep -qs 'bookworm\|^12' /etc/debian_version /etc/os-release; then
    echo "setup.sh: warning: made for Debian 12 (bookworm); carrying on" >&2
fi

# Debian packages: the local engine (systemd-nspawn, mmdebstrap, iproute2), the tools the
# tests use from outside the lab (m4 for sendmail.mc edits, swaks), Vagrant with libvirt
# and QEMU (the lab as VMs, booted by the tests under software emulation where KVM is not
# there), and what `labkit box build` makes the box with (extlinux, qemu-img, sfdisk).
# The tests run shellcheck on the project's shell scripts.
APT_PACKAGES=(systemd-container mmdebstrap iproute2 util-linux mount psmisc kmod m4 swaks
    dnsutils python3 python3-venv python3-pip git ca-certificates vagrant vagrant-libvirt
    shellcheck nmap chromium
    libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base iptables
    extlinux syslinux-common fdisk e2fsprogs)
# Without systemd, libvirt's daemons are started by hand (labkit.engines.libvirtd) with
# the init scripts' package instead of the systemd units'.
[ -d /run/systemd/system ] || APT_PACKAGES+=(libvirt-daemon-system-sysv)
# JupyterHub's proxy runs on Node.js: Debian's nodejs and npm, unless a Node.js is here.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages: labkit itself (editable) and what the course and tests use.
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

# JupyterHub's proxy (labkit class serve), from npm: 5.1 runs on Debian 12's Node.js 18.
command -v configurable-http-proxy >/dev/null 2>&1 ||
    npm install -g --silent configurable-http-proxy@5.1

# The learners' environment on a shared server: Debian's own Python (a Python under
# /root is out of their reach), labkit from this checkout and what the course uses. Their
# kernels reach their lab through the lab service (labkit service).
LEARNER_VENV=/opt/labkit/venv
[ -x "$LEARNER_VENV/bin/python" ] || /usr/bin/python3 -m venv "$LEARNER_VENV"
"$LEARNER_VENV/bin/python" -m pip install -q --disable-pip-version-check -e .

if [ "${1:-}" = "--install-only" ]; then
    echo "setup.sh: installed. Start the lab with: labkit up"
    exit 0
fi

labkit up
echo "setup.sh: starting JupyterLab on http://127.0.0.1:8888 (Ctrl-C stops it; 'labkit down' stops the lab)"
echo "setup.sh: the course opens on notebooks/README.ipynb: lessons, exercises and solutions"
exec jupyter lab --allow-root --no-browser --ip 127.0.0.1 --port 8888 \
    --ServerApp.root_dir="$PWD" --LabApp.default_url=/lab/tree/notebooks/README.ipynb
