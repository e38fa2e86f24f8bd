#!/bin/sh
# Runs station commands (status, check-config, speaker-test) as the service user when
# called as root, so "sudo cunxiang status" never leaves root-owned files in
# /var/lib/cunxiang that the service could not open.
if [ "$(id -u)" -eq 0 ] && id cunxiang >/dev/null 2>&1; then
    exec runuser -u cunxiang -- /opt/cunxiang/venv/bin/cunxiang "$@"
fi
exec /opt/cunxiang/venv/bin/cunxiang "$@"
