# shellcheck shell=bash
# server: the organisation's internal mail server (Postfix), final delivery for the
# organisation's users. BASELINE configuration: careless on purpose (product name in
# the banner, VRFY answered, a too-broad mynetworks, no TLS, no restrictions beyond
# Postfix's defaults, smtpd not chrooted). Outbound mail goes through the relay.

add_mail_users
write_aliases
sed -e "s/@FQDN@/$HOST_FQDN/g" -e "s/@ORG_DOMAIN@/$LAB_ORG_DOMAIN/g" \
    -e "s/@RELAYHOST@/$LAB_INSIDE_GATEWAY_NAME/g" \
    "$PROVISION_DIR/files/server/main.cf" > /etc/postfix/main.cf
newaliases
# BASELINE: smtpd outside Postfix's chroot jail (Debian's master.cf has it in, "y").
postconf -F smtp/inet/chroot=n
# Baseline snapshot: labkit's reset and the course's start states restore from here.
install -d -m 0700 /var/lib/labkit/baseline
tar -C / -czf /var/lib/labkit/baseline/mail-config.tar.gz etc/postfix etc/aliases etc/aliases.db
