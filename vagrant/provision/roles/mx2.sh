# shellcheck shell=bash
# mx2: the organisation's backup MX, Postfix in the DMZ beside the Sendmail relay and in the
# same position (dual homed, an MX of the organisation's domain, handing its mail to the
# internal server), so that section 09 hardens Postfix where strangers reach it.
# BASELINE configuration: careless on purpose (the product in the banner, VRFY answered,
# an open relay for the whole 192.168 range, no restrictions on strangers, no TLS, smtpd
# outside its chroot jail).

add_mail_users
write_aliases
sed -e "s/@FQDN@/$HOST_FQDN/g" -e "s/@ORG_DOMAIN@/$LAB_ORG_DOMAIN/g" \
    "$PROVISION_DIR/files/mx2/main.cf" > /etc/postfix/main.cf
printf '%s\tsmtp:[%s]\n' "$LAB_ORG_DOMAIN" "$LAB_SERVER_FQDN" > /etc/postfix/transport
postmap /etc/postfix/transport
newaliases
# BASELINE: smtpd outside Postfix's chroot jail (Debian's master.cf has it in, "y").
postconf -F smtp/inet/chroot=n
# Baseline snapshot: labkit's reset and the course's start states restore from here.
install -d -m 0700 /var/lib/labkit/baseline
tar -C / -czf /var/lib/labkit/baseline/mail-config.tar.gz etc/postfix etc/aliases etc/aliases.db
