# internet: the outside world. The lab's DNS (BIND, authoritative for the lab zones,
# forward and reverse), the lab DNSBL (rbldnsd, reached through BIND), and the MX of
# the outside domain: an SMTP sink that records every message it receives.

# --- BIND: the lab zones, and forward zones for the DNSBLs served by rbldnsd ---
install -d -m 0755 /etc/bind/lab
cp "$PROVISION_DIR"/generated/zones/db.* /etc/bind/lab/
{
    echo "// Lab zones, rendered from labkit/topology.yaml by provision.sh"
    for f in "$PROVISION_DIR"/generated/zones/db.*; do
        z=${f##*/db.}
        echo "zone \"$z\" { type primary; file \"/etc/bind/lab/db.$z\"; };"
    done
    for z in "$LAB_DNSBL_ZONE" "$LAB_RHSBL_ZONE"; do
        echo "zone \"$z\" { type forward; forward only; forwarders { 127.0.0.1 port 5353; }; };"
    done
} > /etc/bind/named.conf.local
put_file internet/named.conf.options /etc/bind/named.conf.options 0644
# One worker thread is plenty for a lab and keeps BIND's memory small.
echo 'OPTIONS="-u bind -n 1"' > /etc/default/named

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
