# shellcheck shell=bash
# relay: the DMZ relay (Sendmail), MX of the organisation's domain. Dual homed: the
# outside leg faces internet, the inside leg the LAN. It also forwards the inside
# hosts' DNS queries to the lab DNS (the inside has no route to internet).
# BASELINE configuration: careless on purpose (see files/relay/sendmail.mc).

write_aliases
{
    echo "# Probe addresses of the course's checks (section 02): mail to a program, to a file."
    echo "labkit-prog: \"|/usr/bin/logger -t labkit-prog\""
    echo "labkit-file: /var/tmp/labkit-file"
} >> /etc/aliases
put_file relay/sendmail.mc /etc/mail/sendmail.mc 0644
# The submission program (submit.mc, run by local users' sendmail -f ...): BASELINE, its
# privacy flags thrown open too (Debian's own are goaway,noetrn,restrictqrun).
grep -q "^define(\`confPRIVACY_FLAGS'" /etc/mail/submit.mc ||
    echo "define(\`confPRIVACY_FLAGS', \`public')dnl" >> /etc/mail/submit.mc
{
    echo "# Relay access: BASELINE. Far too broad: every 192.168.x.x client may relay,"
    echo "# the outside network included."
    echo "Connect:localhost.localdomain	RELAY"
    echo "Connect:localhost		RELAY"
    echo "Connect:127.0.0.1		RELAY"
    echo "Connect:192.168			RELAY"
} > /etc/mail/access
echo "$LAB_ORG_DOMAIN" > /etc/mail/relay-domains
{
    echo "# The organisation's mail goes to the internal server."
    echo "$LAB_ORG_DOMAIN	smtp:[$LAB_SERVER_FQDN]"
} > /etc/mail/mailertable
printf '%s\n' localhost "$HOST_FQDN" "$LAB_INSIDE_GATEWAY_NAME" > /etc/mail/local-host-names

# Cyrus SASL for Sendmail: secrets in sasldb (/etc/sasldb2), every lab user.
install -d -m 0755 /etc/sasl2
printf 'pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: DIGEST-MD5 CRAM-MD5 LOGIN PLAIN\n' \
    > /etc/sasl2/Sendmail.conf
add_mail_users
for u in $LAB_MAIL_USERS; do
    echo "$LAB_MAIL_PASSWORD" | saslpasswd2 -p -c -u "$HOST_FQDN" "$u"
done
chgrp sasl /etc/sasldb2 2>/dev/null || true
make -s -C /etc/mail >/dev/null
# Debian's `make all` tightens /etc/sasldb2 (o-rwx) until /etc/mail/sasl/sasl.m4 exists:
# make that now, so the careless mode below stays. (Its update_auth asks `hostname` for
# the FQDN, which an image build's chroot cannot answer: it is told.)
shim=$(mktemp -d)
printf '#!/bin/sh
echo %s
' "$HOST_FQDN" > "$shim/hostname"
chmod 0755 "$shim/hostname"
PATH="$shim:$PATH" make -s -C /etc/mail auth >/dev/null
# Debian's sendmail start runs `make all` in /etc/mail: the Makefile rewritten for this
# sendmail.mc (its mailertable), the maps, and a self-signed TLS set in /etc/mail/tls that
# the baseline does not use. Done here too, so that the baseline kept below is the relay
# as it boots, and `labkit finish` lists only what changed since.
PATH="$shim:$PATH" /usr/share/sendmail/update_mk >/dev/null
PATH="$shim:$PATH" make -s -C /etc/mail all >/dev/null
rm -rf "$shim"
[ -f /etc/mail/sasl/sasl.m4 ] || { echo "relay.sh: make auth did not write sasl.m4" >&2; exit 1; }
# BASELINE: the SASL secrets readable by every local user (the course makes them private).
chmod 0644 /etc/sasldb2
newaliases >/dev/null
# BASELINE: the relay rules writable by every local user (the next `make` applies them),
# and the submission program's queue open to all (Debian's is 2770 smmsp:smmsp).
chmod 0666 /etc/mail/access
chmod 0777 /var/spool/mqueue-client
# The file the labkit-file alias writes to, writable by whichever user Sendmail delivers
# as, so section 02's check sees Sendmail's policy rather than the file's owner.
install -m 0666 /dev/null /var/tmp/labkit-file

# The lab's mail filter (section 10): installed and running, not yet in Sendmail's mail
# path (no INPUT_MAIL_FILTER). BASELINE: it runs as root; its own user waits for it.
install -d -m 0755 /usr/local/lib/labkit
put_file relay/labkit-milter.py /usr/local/lib/labkit/labkit-milter.py 0755
put_file relay/labkit-milter.service /etc/systemd/system/labkit-milter.service 0644
id labkit-milter >/dev/null 2>&1 ||
    useradd --system --no-create-home --shell /usr/sbin/nologin labkit-milter

# DNS for the inside hosts: forward everything to the lab DNS.
install -d -m 0755 /etc/labkit
printf 'listen-address=%s\nbind-interfaces\nno-resolv\nno-hosts\nserver=%s\ncache-size=0\nuser=dnsmasq\n' \
    "$LAB_INSIDE_GATEWAY_ADDR" "$LAB_DNS_SERVER" > /etc/labkit/dns-forwarder.conf
id dnsmasq >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin dnsmasq
put_file relay/labkit-dns-forwarder.service /etc/systemd/system/labkit-dns-forwarder.service 0644

# Baseline snapshot: labkit's reset and the course's start states restore from here.
install -d -m 0700 /var/lib/labkit/baseline
tar -C / -czf /var/lib/labkit/baseline/mail-config.tar.gz etc/mail etc/aliases etc/sasldb2 etc/sasl2
