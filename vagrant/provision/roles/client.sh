# shellcheck shell=bash
# client: a LAN workstation, the inside vantage point. No MTA of its own: it submits
# to the organisation's servers with swaks (or Python's smtplib).
add_mail_users
