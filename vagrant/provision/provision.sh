#!/bin/bash
# Provision one lab host as its role in the topology.
#
#   provision.sh HOST        (HOST: internet, relay, server or client)
#
# The same script serves both engines: the local engine runs it inside each host's
# root file system while the image is built (a chroot, no systemd running), Vagrant
# runs it in a booted VM. It installs what is missing, writes the host's identity and
# its BASELINE configuration (careless on purpose: the course hardens it), and enables
# the host's services; in a booted system it also (re)starts them.
set -euo pipefail

HOST=${1:?usage: provision.sh HOST}
PROVISION_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PROVISION_DIR

if [ ! -f "$PROVISION_DIR/generated/host-$HOST.env" ]; then
    echo "provision.sh: unknown host '$HOST' (no generated/host-$HOST.env)" >&2
    exit 2
fi
# shellcheck source=/dev/null
. "$PROVISION_DIR/generated/lab.env"
# shellcheck source=/dev/null
. "$PROVISION_DIR/generated/host-$HOST.env"
# shellcheck source=vagrant/provision/lib.sh
. "$PROVISION_DIR/lib.sh"
# Word lists from the host's environment file.
read -r -a packages <<< "$HOST_PACKAGES"
read -r -a services <<< "$HOST_SERVICES"

log "provisioning $HOST_FQDN"
install_packages "${packages[@]}"
set_identity
listed_address
# shellcheck source=/dev/null
. "$PROVISION_DIR/roles/$HOST.sh"
enable_services "${services[@]}"
if booted; then
    restart_services "${services[@]}"
fi
log "done: $HOST_FQDN"
