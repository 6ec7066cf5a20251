# shellcheck shell=bash
# internet: the outside world. The lab's DNS (Unbound, authoritative for the lab zones,
# forward and reverse), the lab DNSBL (rbldnsd, reached through Unbound), and the MX of
# the outside domain: an SMTP sink that records every message it receives.

# --- Unbound: authoritative for the lab zones, forwarding the DNSBL zones to rbldnsd ---
install -d -m 0755 /etc/unbound/lab
cp "$PROVISION_DIR"/generated/zones/db.* /etc/unbound/lab/
rm -f /etc/unbound/unbound.conf.d/*.conf
{
    cat "$PROVISION_DIR/files/internet/unbound.conf"
    echo
    echo "# Lab zones, rendered from labkit/topology.yaml by provision.sh"
    for f in "$PROVISION_DIR"/generated/zones/db.*; do
        z=${f##*/db.}
        printf 'auth-zone:\n    name: "%s."\n    zonefile: "/etc/unbound/lab/db.%s"\n' "$z" "$z"
        printf '    for-downstream: yes\n    for-upstream: yes\n    fallback-enabled: no\n'
    done
    for z in "$LAB_DNSBL_ZONE" "$LAB_RHSBL_ZONE"; do
        printf 'forward-zone:\n    name: "%s."\n    forward-addr: 127.0.0.1@5353\n' "$z"
    done
} > /etc/unbound/unbound.conf
unbound-checkconf /etc/unbound/unbound.conf

# --- rbldnsd: the DNSBL (by address) and RHSBL (by domain) zones, RFC 5782 entries ---
install -d -m 0755 /var/lib/rbldns/lab
cp "$PROVISION_DIR"/generated/zones/*.ip4set "$PROVISION_DIR"/generated/zones/*.dnset /var/lib/rbldns/lab/
sed -e "s/@DNSBL_ZONE@/$LAB_DNSBL_ZONE/g" -e "s/@RHSBL_ZONE@/$LAB_RHSBL_ZONE/g" \
    "$PROVISION_DIR/files/internet/rbldnsd.service" > /etc/systemd/system/rbldnsd.service

# --- the MX of the outside domain: an aiosmtpd sink recording every message ---
put_file internet/labkit-mx-sink.py /usr/local/lib/labkit/labkit-mx-sink.py 0755
sed -e "s|@SPOOL@|$LAB_SINK_SPOOL|g" -e "s/@PORT@/$LAB_SINK_PORT/g" \
    -e "s/@FQDN@/$HOST_FQDN/g" \
    "$PROVISION_DIR/files/internet/labkit-mx-sink.service" > /etc/systemd/system/labkit-mx-sink.service
install -d -m 0755 "$LAB_SINK_SPOOL"
