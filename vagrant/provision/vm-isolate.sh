#!/bin/bash
# Keep a lab VM off everything but the lab: no default route once it is provisioned,
# across reboots and DHCP renewals.
#
#   vm-isolate.sh           isolate (the Vagrantfile's last provisioner, on every host)
#   vm-isolate.sh --lift    give the VM back a default route via the DHCP router of its
#                           NAT/management interface, and that DHCP server's DNS, for the
#                           duration of provisioning (the Vagrantfile's first provisioner)
#
# For Vagrant's VMs only: the local engine's hosts never have a route off the lab, and
# provision.sh does not call this script.
#
# Under Vagrant each VM keeps its provider's NAT or management interface (VirtualBox NAT,
# 10.0.2.0/24; vagrant-libvirt's management network, 192.168.121.0/24 by default), which
# Vagrant reaches it through over SSH. Isolating removes the default routes (IPv4 and
# IPv6) and nothing else: the on-link route to that interface's own subnet stays, and
# with it `vagrant ssh`, `vagrant rsync` and Vagrant's provisioners.
#
# Isolating installs, and keeps in force (running it again changes nothing):
# - /usr/local/sbin/labkit-no-default-route: deletes every default route and stops IPv6
#   router advertisements from adding one; does nothing while the isolation is lifted;
# - dhclient hooks (the Debian 12 boxes bring the NAT interface up with ifupdown and
#   isc-dhcp-client): an enter hook that keeps dhclient from installing the DHCP router
#   and from rewriting /etc/resolv.conf (the lab resolver provision.sh wrote), and an
#   exit hook that runs labkit-no-default-route after every lease event;
# - labkit-no-default-route.service: a oneshot after network-online.target, every boot.
#
# With the kit's own box (labkit box build) the management network is isolated and the
# packages are in the box: --lift then has no router to use, and nothing to do.
#
# Lifting lasts until the next isolate or the next reboot (its mark is under /run); a
# reboot while lifted also puts back the resolv.conf that the lift replaced.
set -euo pipefail

HELPER=/usr/local/sbin/labkit-no-default-route
UNIT=labkit-no-default-route.service
UNIT_FILE=/etc/systemd/system/$UNIT
ENTER_HOOK=/etc/dhcp/dhclient-enter-hooks.d/zz-labkit-isolate
EXIT_HOOK=/etc/dhcp/dhclient-exit-hooks.d/zz-labkit-isolate
RUN_DIR=/run/labkit/vm-isolate
LIFTED=$RUN_DIR/lifted
STATE_DIR=/var/lib/labkit/vm-isolate
ROUTES_RECORD=$STATE_DIR/default-routes    # what isolating removed, for --lift
SAVED_RESOLV=$STATE_DIR/resolv.conf.lab    # the resolv.conf a lift replaced
BOX_REPO=/var/lib/labkit/debs              # the kit's own box: every package, no network
LIFT_MARK="# labkit vm-isolate.sh --lift: the DHCP server's DNS, for provisioning"

log() { echo "[vm-isolate] $*"; }
die() { echo "vm-isolate.sh: $*" >&2; exit 1; }

usage() {
    echo "usage: vm-isolate.sh [--lift]"
    echo "  (no option)  remove the default routes and keep them removed (last provisioner)"
    echo "  --lift       a default route via the DHCP router, for provisioning (first provisioner)"
}

# Write stdin to FILE with MODE, only if its content differs (so a second run is a no-op).
put() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat > "$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
    else
        install -D -m "$mode" "$tmp" "$file"
        rm -f "$tmp"
        log "wrote $file"
    fi
    chmod "$mode" "$file"
}

default_routes() {
    ip -4 route show default
    ip -6 route show default 2>/dev/null || true
}

# The last lease of each dhclient lease file, as "INTERFACE ADDRESS ROUTER DNS,DNS...",
# for an interface that still holds that address.
current_leases() {
    local f line itf addr held
    shopt -s nullglob
    for f in /var/lib/dhcp/dhclient.leases /var/lib/dhcp/dhclient.*.leases; do
        [ -f "$f" ] || continue
        line=$(awk '
            /^lease *\{/ { itf = ""; addr = ""; rtr = ""; dns = "" }
            /^ *interface / { v = $2; gsub(/[";]/, "", v); itf = v }
            /^ *fixed-address / { v = $2; gsub(/;/, "", v); addr = v }
            /^ *option routers / {
                sub(/^ *option routers */, ""); gsub(/[; ]/, ""); split($0, r, ","); rtr = r[1]
            }
            /^ *option domain-name-servers / {
                sub(/^ *option domain-name-servers */, ""); gsub(/[; ]/, ""); dns = $0
            }
            /^\}/ { if (itf != "" && addr != "" && rtr != "") last = itf " " addr " " rtr " " dns }
            END { if (last != "") print last }
        ' "$f")
        [ -n "$line" ] || continue
        read -r itf addr _ <<< "$line"
        held=$(ip -4 -o addr show dev "$itf" 2>/dev/null || true)
        if grep -qF " inet $addr/" <<< "$held"; then
            echo "$line"
        fi
    done
    shopt -u nullglob
}

install_isolation() {
    put "$HELPER" 0755 <<'EOF'
#!/bin/sh
# labkit (vagrant/provision/vm-isolate.sh): a lab host has no route off the lab.
# Deletes every default route, IPv4 and IPv6, and keeps IPv6 router advertisements from
# adding one. While the isolation is lifted for provisioning (/run/labkit/vm-isolate/lifted),
# does nothing. After a lift that a reboot ended, puts back the resolv.conf it replaced.
[ -e /run/labkit/vm-isolate/lifted ] && exit 0
saved=/var/lib/labkit/vm-isolate/resolv.conf.lab
if [ -f "$saved" ] && grep -q '^# labkit vm-isolate.sh --lift' /etc/resolv.conf 2>/dev/null; then
    rm -f /etc/resolv.conf
    mv -f "$saved" /etc/resolv.conf
fi
for f in /proc/sys/net/ipv6/conf/*/accept_ra_defrtr; do
    [ -e "$f" ] && { echo 0 > "$f"; } 2>/dev/null
done
for family in -4 -6; do
    n=0
    while [ "$n" -lt 16 ] && [ -n "$(ip "$family" route show default 2>/dev/null)" ]; do
        ip "$family" route del default 2>/dev/null || break
        n=$((n + 1))
    done
done
left="$(ip -4 route show default)$(ip -6 route show default 2>/dev/null)"
if [ -n "$left" ]; then
    echo "labkit-no-default-route: a default route is still there: $left" >&2
    exit 1
fi
exit 0
EOF
    put "$ENTER_HOOK" 0644 <<'EOF'
# labkit (vagrant/provision/vm-isolate.sh): sourced by dhclient-script. A lab host takes
# its address from this DHCP server, never its DNS servers (it keeps the lab resolver),
# and, unless the isolation is lifted for provisioning, never its router.
make_resolv_conf() { :; }
if [ ! -e /run/labkit/vm-isolate/lifted ]; then
    unset new_routers new_rfc3442_classless_static_routes
fi
EOF
    put "$EXIT_HOOK" 0644 <<'EOF'
# labkit (vagrant/provision/vm-isolate.sh): sourced by dhclient-script after every lease
# event, last of the exit hooks: no default route stays.
if [ -x /usr/local/sbin/labkit-no-default-route ]; then
    /usr/local/sbin/labkit-no-default-route || true
fi
EOF
    put "$UNIT_FILE" 0644 <<EOF
[Unit]
Description=No route off the lab (labkit vm-isolate.sh)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=$HELPER
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
EOF
    systemctl daemon-reload
    systemctl enable --quiet "$UNIT"
}

isolate() {
    install_isolation
    mkdir -p "$STATE_DIR"
    local routes
    routes=$(ip -4 route show default)
    if [ -n "$routes" ]; then
        printf '%s\n' "$routes" > "$ROUTES_RECORD"
    fi
    rm -f "$LIFTED"
    "$HELPER" || die "the default routes could not all be removed"
    rm -f "$SAVED_RESOLV"   # resolv.conf is the lab's again (provision.sh's, or put back)
    [ -z "$(default_routes)" ] || die "a default route is still there: $(default_routes)"
    log "no default route; routes kept: $(ip -4 route show | paste -sd ';' -)"
}

lift() {
    mkdir -p "$RUN_DIR" "$STATE_DIR"
    touch "$LIFTED"   # first: the hooks and the helper now stand aside
    local itf="" addr="" router="" dns="" lease current servers
    lease=$(current_leases)
    if [ -n "$lease" ]; then
        read -r itf addr router dns <<< "${lease%%$'\n'*}"
    fi
    current=$(ip -4 route show default)
    if [ -n "$current" ]; then
        log "a default route is there: ${current%%$'\n'*}"
    else
        if [ -z "$router" ] && [ -s "$ROUTES_RECORD" ]; then
            read -r router itf <<< "$(awk '$1 == "default" {
                for (i = 2; i < NF; i++) { if ($i == "via") v = $(i + 1); if ($i == "dev") d = $(i + 1) }
                print v, d; exit }' "$ROUTES_RECORD")"
        fi
        if { [ -z "$router" ] || [ -z "$itf" ]; } && [ -s "$BOX_REPO/Packages" ]; then
            log "no router on the management network (an isolated one): nothing to lift," \
                "the packages come from the box's own repository ($BOX_REPO)"
            return 0
        fi
        if [ -z "$router" ] || [ -z "$itf" ]; then
            die "no DHCP lease with a router in /var/lib/dhcp and no route recorded in" \
                "$ROUTES_RECORD: cannot give the VM a default route for provisioning"
        fi
        ip -4 route replace default via "$router" dev "$itf"
        log "default route via $router dev $itf, until vm-isolate.sh runs (or a reboot)"
    fi
    if [ -z "$dns" ]; then
        log "no DNS server known from DHCP: /etc/resolv.conf left as it is"
        return 0
    fi
    if ! grep -qF -- "$LIFT_MARK" /etc/resolv.conf 2>/dev/null; then
        if [ -e /etc/resolv.conf ]; then
            cp /etc/resolv.conf "$SAVED_RESOLV"
        fi
        IFS=, read -r -a servers <<< "$dns"
        rm -f /etc/resolv.conf
        {
            echo "$LIFT_MARK"
            printf 'nameserver %s\n' "${servers[@]}"
        } > /etc/resolv.conf
    fi
    log "resolver: the DHCP server's (${dns//,/ }) until provisioning writes the lab's"
}

case "${1:-}" in
    ""|--lift) ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "run it as root (Vagrant's shell provisioner does)"
[ -d /run/systemd/system ] || die "run it in a booted VM, not in an image build or a chroot"
if [ "${1:-}" = --lift ]; then
    lift
else
    isolate
fi
