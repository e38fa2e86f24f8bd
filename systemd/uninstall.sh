#!/usr/bin/env bash
# Remove the Cunxiang station service installed by systemd/install.sh.
#
#   sudo systemd/uninstall.sh            # keeps config and data
#   sudo systemd/uninstall.sh --purge    # removes them too (the database!)
#
# By default it stops and disables the service and removes the unit, the venv
# (/opt/cunxiang) and the /usr/local/bin/cunxiang wrapper. /etc/cunxiang (the
# technician's config and the trusted keys), /var/lib/cunxiang (the database,
# possibly holding records the centre has not received yet) and the user are
# kept, so a reinstall carries on where it stopped.
#
# Options:
#   --root DIR       remove from DIR instead of / (also: DESTDIR=DIR)
#   --purge          also remove /etc/cunxiang, /var/lib/cunxiang,
#                    /var/cache/cunxiang and the user cunxiang
#   --no-systemctl   do not call systemctl at all
#   -h, --help       this text
# Running it again does nothing.
set -euo pipefail

SERVICE=cunxiang
SERVICE_USER=cunxiang
WRAPPER_MARK="# cunxiang-wrapper: installed by systemd/install.sh"

ROOT="${DESTDIR:-}"
PURGE=0
USE_SYSTEMCTL=1
CHANGES=0

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { printf 'uninstall.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }
changed() { CHANGES=$((CHANGES + 1)); printf '  changed: %s\n' "$*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT="$2"; shift 2 ;;
        --root=*) ROOT="${1#--root=}"; shift ;;
        --purge) PURGE=1; shift ;;
        --no-systemctl) USE_SYSTEMCTL=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

ROOT="${ROOT%/}"
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "no such folder: $ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != "/" ] || ROOT=""
fi
REAL=0
if [ -z "$ROOT" ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0), or give --root DIR"
    REAL=1
fi

remove() {
    local path="$ROOT$1"
    if [ -e "$path" ] || [ -L "$path" ]; then
        rm -rf -- "$path"
        changed "removed $1"
    fi
}

stop_and_disable() {
    local unit="$SERVICE.service"
    if [ "$USE_SYSTEMCTL" -eq 0 ] || ! command -v systemctl >/dev/null; then
        remove "/etc/systemd/system/multi-user.target.wants/$unit"
        return 0
    fi
    if [ -n "$ROOT" ]; then
        if systemctl --root="$ROOT" is-enabled --quiet "$unit" 2>/dev/null; then
            systemctl --root="$ROOT" disable "$unit" 2>/dev/null
            changed "disabled $unit (offline, in $ROOT)"
        fi
        return 0
    fi
    if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit"; then
        systemctl stop "$unit"
        changed "stopped $unit"
    fi
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        systemctl disable "$unit"
        changed "disabled $unit"
    fi
}

say "uninstalling Cunxiang from ${ROOT:-/}"
stop_and_disable
remove "/etc/systemd/system/$SERVICE.service"
if [ "$REAL" -eq 1 ] && [ "$USE_SYSTEMCTL" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
remove /opt/cunxiang
if [ -f "$ROOT/usr/local/bin/cunxiang" ] && grep -qF "$WRAPPER_MARK" "$ROOT/usr/local/bin/cunxiang"; then
    remove /usr/local/bin/cunxiang
fi

if [ "$PURGE" -eq 1 ]; then
    remove /etc/cunxiang
    remove /var/lib/cunxiang
    remove /var/cache/cunxiang
    if [ "$REAL" -eq 1 ] && getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER"
        changed "removed user $SERVICE_USER"
    fi
    # The groups gpio, audio and dialout are shared with the system: kept.
else
    for kept in /etc/cunxiang /var/lib/cunxiang; do
        if [ -e "$ROOT$kept" ]; then say "kept $kept (remove with --purge)"; fi
    done
fi

if [ "$CHANGES" -eq 0 ]; then
    say "done: nothing to remove"
else
    say "done: $CHANGES change(s)"
fi
