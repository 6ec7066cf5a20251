"""The lab service: root's part of labkit on a shared server, asked for by learners'
unprivileged labkit over a Unix socket (see labkit.service.server)."""
