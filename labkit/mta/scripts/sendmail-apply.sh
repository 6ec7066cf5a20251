#!/bin/bash
# Apply a new sendmail.mc on this host, safely. Run by labkit (labkit/mta/sendmail.py):
#
#   sendmail-apply.sh CANDIDATE_MC WORK_DIR LAST_GOOD_TAR BASELINE_TAR [STAGED DEST]...
#
# Builds the new sendmail.cf aside with m4 (any m4 diagnostic refuses it), loads it with
# `sendmail -C new.cf -bt` (any "line N:" complaint refuses it), then installs it, runs
# make -C /etc/mail, has Sendmail re-read its configuration (SIGHUP) and waits for its
# greeting; if any of those fail, /etc/mail is put back as it was and Sendmail restarted. Complaints Sendmail logs while
# starting (unsafe or unreadable files) are printed as "WARNING <line>".
# Prints "STAGE <name>" as it goes; exits 0 applied, 10 refused, 11 rolled back.
set -u
cand=$1; work=$2; last_good=$3; baseline=$4
mkdir -p "$work" "$(dirname "$last_good")"
say() { echo "STAGE $1"; }
say m4
cd /etc/mail || exit 11
m4 "$cand" > "$work/sendmail.cf.new" 2> "$work/m4.err"; rc=$?
if [ $rc -ne 0 ] || [ -s "$work/m4.err" ]; then cat "$work/m4.err"; exit 10; fi
say cf
sendmail -C "$work/sendmail.cf.new" -bt -d0.1 < /dev/null > "$work/cf.out" 2>&1; rc=$?
if [ $rc -ne 0 ] || grep -q ': line [0-9]*:' "$work/cf.out"; then
    grep -E ': line [0-9]+:|rror|arning' "$work/cf.out" || tail -n 5 "$work/cf.out"; exit 10
fi
[ -f "$last_good" ] || cp "$baseline" "$last_good" 2>/dev/null || tar -C / -czf "$last_good" etc/mail etc/aliases
tar -C / -czf "$work/previous.tar.gz" etc/mail etc/aliases
cp /etc/mail/sendmail.cf "$work/sendmail.cf.old"
restore() {
    echo "ROLLBACK"
    rm -rf /etc/mail && tar -C / -xzf "$work/previous.tar.gz" && make -s -C /etc/mail >/dev/null 2>&1
    systemctl restart sendmail >/dev/null 2>&1
    exit 11
}
[ "$cand" = /etc/mail/sendmail.mc ] || cp "$cand" /etc/mail/sendmail.mc
shift 4
while [ $# -ge 2 ]; do  # staged files (maps, aliases): installed after the backup was taken
    install -D -m 0644 "$1" "$2"; shift 2
done
say make
if ! make -s -C /etc/mail > "$work/make.out" 2>&1 || grep -qE '^(m4|makemap|newaliases|sendmail):' "$work/make.out"; then
    grep -E '^(m4|makemap|newaliases|sendmail):|rror' "$work/make.out" || tail -n 5 "$work/make.out"
    restore
fi
say restart
mark=$(journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
# A running daemon re-reads sendmail.cf on SIGHUP (it starts itself again, under a new
# pid, in milliseconds); Debian's init script takes seconds. Without a daemon to signal,
# or if it does not come back, the service is restarted.
pidfile=/run/sendmail/mta/sendmail.pid
old=$(head -n 1 "$pidfile" 2>/dev/null)
hupped=""
if [ -n "$old" ] && kill -HUP "$old" 2>/dev/null; then
    for _ in $(seq 1 100); do
        new=$(head -n 1 "$pidfile" 2>/dev/null)
        if [ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null; then
            hupped=1; break
        fi
        sleep 0.05
    done
fi
if [ -z "$hupped" ] && ! systemctl restart sendmail > "$work/restart.out" 2>&1; then
    cat "$work/restart.out"; journalctl -u sendmail -n 8 --no-pager -o cat; restore
fi
say serving
for _ in $(seq 1 50); do
    if printf 'QUIT\r\n' | nc -w 2 127.0.0.1 25 2>/dev/null | grep -q '^220'; then
        tar -C / -czf "$last_good" etc/mail etc/aliases
        # Serving, but complaining: a file it cannot read (RunAsUser), an unsafe key...
        journalctl --after-cursor="$mark" --no-pager -o cat -t sm-mta \
            | grep -iE 'unsafe|permission denied|cannot open|could not open|error' | sort -u | head -n 8 | sed 's/^/WARNING /'
        diff -u "$work/sendmail.cf.old" /etc/mail/sendmail.cf | grep -E '^[-+][^-+]' | grep -v '^[-+]#' | head -n 200
        exit 0
    fi
    sleep 0.2
done
echo "sendmail does not answer on port 25 after the restart"
journalctl -u sendmail -n 8 --no-pager -o cat
restore
