# shellcheck shell=bash
# Functions shared by the role scripts. Sourced by provision.sh; never run alone.

log() { echo "[provision $HOST] $*"; }

# True in a booted system (a VM, or a booted container); false in an image build chroot.
booted() { [ -d /run/systemd/system ]; }

install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Hostname, /etc/hosts (the host's own names only: everything else comes from the lab
# DNS), resolver, mail name.
set_identity() {
    echo "$HOST_SHORT" > /etc/hostname
    if booted; then hostname "$HOST_SHORT"; fi
    {
        echo "127.0.0.1	localhost"
        echo "::1	localhost ip6-localhost ip6-loopback"
        echo "${HOST_ADDRESSES%% *}	$HOST_FQDN $HOST_SHORT"
    } > /etc/hosts
    rm -f /etc/resolv.conf
    printf 'search %s\nnameserver %s\noptions timeout:2 attempts:2\n' \
        "$LAB_ORG_DOMAIN" "$HOST_RESOLVER" > /etc/resolv.conf
    echo "$HOST_FQDN" > /etc/mailname
}

# Install a file from files/ with a mode: put_file SRC DEST MODE [OWNER]
put_file() {
    install -D -m "$3" "$PROVISION_DIR/files/$1" "$2"
    [ -z "${4:-}" ] || chown "$4" "$2"
}

enable_services() {
    local s
    for s in "$@"; do systemctl enable "$s" >/dev/null 2>&1 || systemctl enable "$s"; done
}

restart_services() {
    systemctl daemon-reload
    local s
    for s in "$@"; do systemctl restart "$s"; done
}

add_mail_users() {
    local u
    for u in $LAB_MAIL_USERS; do
        id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
        echo "$u:$LAB_MAIL_PASSWORD" | chpasswd
    done
}

# Write the aliases file (Sendmail's and Postfix's format is the same).
write_aliases() {
    local pair
    {
        echo "# Lab aliases, from labkit/topology.yaml"
        echo "mailer-daemon: postmaster"
        for pair in $LAB_ALIASES; do
            echo "${pair%%:*}: ${pair#*:}"
        done
    } > /etc/aliases
}

# The host's second, DNSBL-listed address (HOST_LISTED_ADDRESS, from the topology's
# dnsbl.listed_clients), put beside its own address on that network at every boot (the
# local engine adds it itself when it wires the host's network namespace).
listed_address() {
    [ -n "${HOST_LISTED_ADDRESS:-}" ] || return 0
    install -d -m 0755 /usr/local/lib/labkit
    cat > /usr/local/lib/labkit/listed-address.sh <<SCRIPT
#!/bin/sh
# Adds $HOST_LISTED_ADDRESS beside $HOST_LISTED_BESIDE (written by provisioning). In a
# container without CAP_NET_ADMIN the engine has added it already.
ip -o -4 addr show | grep -q " ${HOST_LISTED_ADDRESS%/*}/" && exit 0
dev=\$(ip -o -4 addr show | awk '\$4 ~ /^${HOST_LISTED_BESIDE//./\\.}\\// {print \$2; exit}')
[ -n "\$dev" ] || { echo "no interface has $HOST_LISTED_BESIDE" >&2; exit 1; }
exec ip addr replace $HOST_LISTED_ADDRESS dev "\$dev"
SCRIPT
    chmod 0755 /usr/local/lib/labkit/listed-address.sh
    cat > /etc/systemd/system/labkit-listed-address.service <<UNIT
[Unit]
Description=labkit: this host's DNSBL-listed address ($HOST_LISTED_ADDRESS)
After=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/labkit/listed-address.sh

[Install]
WantedBy=multi-user.target
UNIT
    services+=(labkit-listed-address)
}
