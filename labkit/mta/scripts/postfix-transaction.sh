#!/bin/bash
# One validated Postfix change on this host. Run by labkit (labkit/mta/postfix.py), which
# puts a shell function `change` (the change's commands) before this text:
#
#   postfix-transaction.sh WORK_DIR LAST_GOOD_TAR BASELINE_TAR ORG_DOMAIN
#
# Keeps /etc/postfix, runs `change`, then refuses it if `postconf -n` warns, if `postfix
# check` complains, if the reload fails, or if a test SMTP session to 127.0.0.1 gets a
# 4.3.x configuration error or makes Postfix log a fatal error or an unknown restriction.
# A refused change is rolled back and Postfix reloaded.
# Prints "STAGE <name>" as it goes; exits 0 applied, 11 rolled back.
set -u
work=$1; last_good=$2; baseline=$3; org=$4
mkdir -p "$work" "$(dirname "$last_good")"
say() { echo "STAGE $1"; }
[ -f "$last_good" ] || cp "$baseline" "$last_good" 2>/dev/null || tar -C / -czf "$last_good" etc/postfix etc/aliases
tar -C / -czf "$work/previous.tar.gz" etc/postfix etc/aliases
postconf -n > "$work/postconf.old" 2>/dev/null
mark=$(journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
restore() {
    echo "ROLLBACK"
    rm -rf /etc/postfix && tar -C / -xzf "$work/previous.tar.gz"
    postfix reload >/dev/null 2>&1 || systemctl restart postfix >/dev/null 2>&1
    exit 11
}
say change
if ! change > "$work/change.out" 2>&1; then cat "$work/change.out"; restore; fi
say check
# Postfix reads a configuration file only once it is a second old (it waits for a file
# being written to settle): the change is complete, so its files are dated back.
touch -d "@$(( $(date +%s) - 2 ))" /etc/postfix/main.cf /etc/postfix/master.cf
postconf -n > "$work/postconf.new" 2> "$work/postconf.err"
if [ -s "$work/postconf.err" ]; then cat "$work/postconf.err"; restore; fi
if ! postfix check > "$work/check.out" 2>&1 || [ -s "$work/check.out" ]; then cat "$work/check.out"; restore; fi
say reload
old_smtpd=$(pgrep -d ' ' -x smtpd)
if ! { postfix status >/dev/null 2>&1 && postfix reload || systemctl restart postfix; } > "$work/reload.out" 2>&1; then
    cat "$work/reload.out"; restore
fi
say serving
# `postfix reload` only signals the master: wait until it has re-read its configuration
# (it logs "reload" or, after a restart, "daemon started") and every smtpd of the old
# configuration has gone (an smtpd in a long session may hold on: 5 s at most), so the
# next session anyone opens gets the new settings.
for _ in $(seq 1 50); do
    if journalctl --after-cursor="$mark" --no-pager -o cat \
            | grep -qE '^(reload|daemon started) -- version'; then
        alive=""
        for p in $old_smtpd; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
    fi
    sleep 0.1
done
# One test session, each reply awaited (swaks), its server lines kept ("<-" and "<**").
reply=$(swaks --server 127.0.0.1 --helo labkit.check --from labkit-check@example.net \
              --to "postmaster@$org" --quit-after RCPT --timeout 5 2>&1 | sed -n 's/^<[-*]* *//p')
sleep 0.2
# (journalctl's -t filter was seen to miss fresh entries: the identifiers are grepped)
postfix_log() {
    journalctl --after-cursor="$mark" --no-pager -o short \
        | sed -nE "s/^.* postfix\/($1)\[[0-9]+\]: //p"
}
bad=$(postfix_log 'smtpd|master|postfix-script|cleanup' \
      | grep -E 'fatal:|panic:|error:|unknown .*restriction|configuration error' | head -n 5)
if ! echo "$reply" | grep -q '^220' || echo "$reply" | grep -qE '^4[0-9][0-9] 4\.3\.[05]' || [ -n "$bad" ]; then
    echo "$reply" | grep -E '^[45][0-9][0-9]' | head -n 3
    [ -n "$bad" ] && echo "$bad"
    restore
fi
postfix_log 'smtpd|master|postfix-script' | grep -E 'warning:' | sort -u | head -n 8 | sed 's/^/WARNING /'
diff "$work/postconf.old" "$work/postconf.new" | sed -n 's/^< /-/p; s/^> /+/p'
exit 0
