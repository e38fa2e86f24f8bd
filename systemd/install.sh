#!/usr/bin/env bash
# Install (or upgrade) the Cunxiang station service on a Raspberry Pi OS / Debian box.
#
#   sudo systemd/install.sh            # from the unpacked source folder
#
# Idempotent: a second run changes nothing. It never overwrites an existing
# /etc/cunxiang/gateway.toml (the technician's config); the shipped example is
# kept beside it as gateway.toml.example for reference after upgrades.
#
# What it does, in order:
#   1. apt packages the service needs (python3-venv, espeak-ng, alsa-utils, and
#      python3-lgpio / python3-pyaudio where the distribution has them)
#   2. groups gpio, audio, dialout (if missing) and the system user cunxiang
#   3. /etc/cunxiang, /etc/cunxiang/clips, /var/lib/cunxiang, /var/cache/cunxiang
#   4. /etc/cunxiang/gateway.toml from config/example.toml, only if absent;
#      shipped clips (config/clips/*.wav) into /etc/cunxiang/clips, each only if absent
#   5. the venv /opt/cunxiang/venv with the project pip-installed into it
#   6. /usr/local/bin/cunxiang, a wrapper that runs commands as user cunxiang
#   7. /etc/systemd/system/cunxiang.service, daemon-reload, enable
#
# Options:
#   --root DIR       install into DIR instead of / (also: DESTDIR=DIR); no user,
#                    no chown, no apt, systemctl only offline (--root) to enable
#   --source DIR     the project folder (default: the folder above this script)
#   --no-venv        skip step 5 (tests; or when the venv is managed otherwise)
#   --no-systemctl   do not call systemctl at all
#   --no-apt         do not install apt packages
#   --upgrade        reinstall the Python package even if the source is unchanged
#   --start          start the service now (restart it if it runs)
#   -h, --help       this text
set -euo pipefail

SERVICE=cunxiang
SERVICE_USER=cunxiang
GROUPS_NEEDED=(gpio audio dialout)
APT_PACKAGES=(python3-venv python3-pip espeak-ng alsa-utils python3-lgpio python3-pyaudio)
WRAPPER_MARK="# cunxiang-wrapper: installed by systemd/install.sh"

ROOT="${DESTDIR:-}"
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USE_VENV=1
USE_SYSTEMCTL=1
USE_APT=1
UPGRADE=0
START=0
CHANGES=0

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }
changed() { CHANGES=$((CHANGES + 1)); printf '  changed: %s\n' "$*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT="$2"; shift 2 ;;
        --root=*) ROOT="${1#--root=}"; shift ;;
        --source) [ $# -ge 2 ] || die "--source needs a folder"; SOURCE="$2"; shift 2 ;;
        --source=*) SOURCE="${1#--source=}"; shift ;;
        --no-venv) USE_VENV=0; shift ;;
        --no-systemctl) USE_SYSTEMCTL=0; shift ;;
        --no-apt) USE_APT=0; shift ;;
        --upgrade) UPGRADE=1; shift ;;
        --start) START=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

ROOT="${ROOT%/}"
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != "/" ] || ROOT=""
fi
# The real system: no --root, run as root. Only then users, chown, apt, live systemctl.
REAL=0
if [ -z "$ROOT" ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0), or give --root DIR to install into a folder"
    REAL=1
fi

[ -f "$SOURCE/pyproject.toml" ] || die "no pyproject.toml in '$SOURCE' (give --source with the project folder)"
[ -f "$SOURCE/systemd/$SERVICE.service" ] || die "missing $SOURCE/systemd/$SERVICE.service"
[ -f "$SOURCE/config/example.toml" ] || die "missing $SOURCE/config/example.toml"

# --- helpers -----------------------------------------------------------------

# ensure_dir PATH MODE OWNER:GROUP  (owner applied on the real system only)
ensure_dir() {
    local path="$ROOT$1" mode="$2" owner="$3"
    if [ ! -d "$path" ]; then
        mkdir -p "$(dirname "$path")"
        mkdir -m "$mode" "$path"
        changed "created $1"
    fi
    ensure_attrs "$1" "$mode" "$owner"
}

# ensure_attrs PATH MODE OWNER:GROUP
ensure_attrs() {
    local path="$ROOT$1" mode="$2" owner="$3"
    if [ "$(stat -c %a "$path")" != "$mode" ]; then
        chmod "$mode" "$path"
        changed "mode $mode on $1"
    fi
    if [ "$REAL" -eq 1 ] && [ "$(stat -c %U:%G "$path")" != "$owner" ]; then
        chown "$owner" "$path"
        changed "owner $owner on $1"
    fi
}

# ensure_file SOURCE_FILE PATH MODE OWNER:GROUP  (replaced when its content differs)
ensure_file() {
    local src="$1" path="$ROOT$2"
    if ! cmp -s "$src" "$path"; then
        mkdir -p "$(dirname "$path")"
        cp "$src" "$path.tmp.$$"
        chmod "$3" "$path.tmp.$$"
        mv -f "$path.tmp.$$" "$path"
        changed "installed $2"
    fi
    ensure_attrs "$2" "$3" "$4"
}

# A hash of everything pip would install, to skip an unchanged reinstall.
source_hash() {
    (cd "$SOURCE" && find pyproject.toml gateway drivers audio -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 2>/dev/null \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# --- 1. apt packages ---------------------------------------------------------

install_apt_packages() {
    command -v apt-get >/dev/null || { say "no apt-get: install python3-venv and espeak-ng yourself"; return; }
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
        apt-cache show "$pkg" >/dev/null 2>&1 || continue   # e.g. python3-lgpio outside Pi OS
        missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "installing apt packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    changed "apt packages ${missing[*]}"
}

# --- 2. groups and user ------------------------------------------------------

ensure_user() {
    local group
    for group in "${GROUPS_NEEDED[@]}"; do
        if ! getent group "$group" >/dev/null; then
            groupadd --system "$group"
            changed "created group $group"
        fi
    done
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/cunxiang --no-create-home \
            --shell /usr/sbin/nologin --comment "Cunxiang station service" \
            --groups "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "$SERVICE_USER"
        changed "created user $SERVICE_USER"
    fi
    for group in "${GROUPS_NEEDED[@]}"; do
        if ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$group"; then
            usermod -a -G "$group" "$SERVICE_USER"
            changed "added $SERVICE_USER to group $group"
        fi
    done
}

# --- 3./4. directories and config --------------------------------------------

ensure_dirs_and_config() {
    ensure_dir /etc/cunxiang 750 "root:$SERVICE_USER"
    ensure_dir /etc/cunxiang/clips 750 "root:$SERVICE_USER"
    ensure_dir /var/lib/cunxiang 750 "$SERVICE_USER:$SERVICE_USER"
    ensure_dir /var/cache/cunxiang 750 "$SERVICE_USER:$SERVICE_USER"
    ensure_dir /opt/cunxiang 755 root:root
    ensure_file "$SOURCE/config/example.toml" /etc/cunxiang/gateway.toml.example 640 "root:$SERVICE_USER"
    if [ ! -e "$ROOT/etc/cunxiang/gateway.toml" ]; then
        install -m 640 "$SOURCE/config/example.toml" "$ROOT/etc/cunxiang/gateway.toml"
        changed "created /etc/cunxiang/gateway.toml from config/example.toml (edit it)"
    fi
    ensure_attrs /etc/cunxiang/gateway.toml 640 "root:$SERVICE_USER"
    # Shipped recordings, each only if absent: a technician's own clip is never replaced.
    local clip
    for clip in "$SOURCE"/config/clips/*.wav; do
        [ -f "$clip" ] || continue
        if [ ! -e "$ROOT/etc/cunxiang/clips/$(basename "$clip")" ]; then
            install -m 640 "$clip" "$ROOT/etc/cunxiang/clips/$(basename "$clip")"
            changed "added clip /etc/cunxiang/clips/$(basename "$clip")"
        fi
        ensure_attrs "/etc/cunxiang/clips/$(basename "$clip")" 640 "root:$SERVICE_USER"
    done
    local doc
    for doc in technician-guide.zh.md operations.md; do
        [ -f "$SOURCE/docs/$doc" ] && ensure_file "$SOURCE/docs/$doc" "/opt/cunxiang/docs/$doc" 644 root:root
    done
    return 0
}

# --- 5. venv -----------------------------------------------------------------

ensure_venv() {
    local venv="$ROOT/opt/cunxiang/venv" stamp hash
    [ -z "$ROOT" ] || say "note: a venv made under --root has paths inside $ROOT; use it only there"
    if [ ! -x "$venv/bin/python" ]; then
        # System site packages: Pi OS ships lgpio (gpiozero's pin factory on the Pi)
        # and PyAudio as Debian packages; the venv uses them instead of building.
        python3 -m venv --system-site-packages "$venv"
        changed "created venv /opt/cunxiang/venv"
    fi
    stamp="$venv/.cunxiang-source"
    hash="$(source_hash)"
    if [ "$UPGRADE" -eq 1 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
        "$venv/bin/pip" install --disable-pip-version-check --no-cache-dir --upgrade "$SOURCE"
        printf '%s\n' "$hash" >"$stamp"
        changed "installed the cunxiang package into the venv"
    fi
}

# --- 6. command wrapper ------------------------------------------------------

ensure_wrapper() {
    local target=/usr/local/bin/cunxiang tmp
    if [ -e "$ROOT$target" ] && ! grep -qF "$WRAPPER_MARK" "$ROOT$target"; then
        say "warning: $target exists and is not ours; left alone"
        return 0
    fi
    tmp="$(mktemp)"
    cat >"$tmp" <<EOF
#!/bin/sh
$WRAPPER_MARK
# Runs station commands (status, check-config, speaker-test) as the service
# user when called as root, so "sudo cunxiang status" never leaves root-owned
# files in /var/lib/cunxiang that the service could not open.
if [ "\$(id -u)" -eq 0 ] && id $SERVICE_USER >/dev/null 2>&1; then
    exec runuser -u $SERVICE_USER -- /opt/cunxiang/venv/bin/cunxiang "\$@"
fi
exec /opt/cunxiang/venv/bin/cunxiang "\$@"
EOF
    ensure_file "$tmp" "$target" 755 root:root
    rm -f "$tmp"
}

# --- 7. unit and systemctl ---------------------------------------------------

ensure_unit() {
    local before=$CHANGES
    ensure_file "$SOURCE/systemd/$SERVICE.service" "/etc/systemd/system/$SERVICE.service" 644 root:root
    UNIT_CHANGED=$((CHANGES - before))
}

run_systemctl() {
    local code_changed="$1"
    if [ "$USE_SYSTEMCTL" -eq 0 ] || ! command -v systemctl >/dev/null; then
        say "systemctl skipped: run 'systemctl daemon-reload && systemctl enable --now $SERVICE'"
        return 0
    fi
    if [ -n "$ROOT" ]; then
        if ! systemctl --root="$ROOT" is-enabled --quiet "$SERVICE.service" 2>/dev/null; then
            systemctl --root="$ROOT" enable "$SERVICE.service" 2>/dev/null
            changed "enabled $SERVICE.service (offline, in $ROOT)"
        fi
        return 0
    fi
    local live=0
    [ -d /run/systemd/system ] && live=1   # booted with systemd (not a chroot or container)
    if [ "$live" -eq 1 ] && [ "$UNIT_CHANGED" -gt 0 ]; then
        systemctl daemon-reload
    fi
    if ! systemctl is-enabled --quiet "$SERVICE.service" 2>/dev/null; then
        systemctl enable "$SERVICE.service"
        changed "enabled $SERVICE.service (starts at boot)"
    fi
    [ "$live" -eq 1 ] || { say "systemd is not running here: the service starts at the next boot"; return 0; }
    if [ "$START" -eq 1 ]; then
        systemctl restart "$SERVICE.service"
        say "started $SERVICE.service"
    elif [ "$code_changed" -gt 0 ] || [ "$UNIT_CHANGED" -gt 0 ]; then
        systemctl try-restart "$SERVICE.service"   # restarts only if it was running
    fi
}

# --- main --------------------------------------------------------------------

say "installing Cunxiang from $SOURCE into ${ROOT:-/}"
if [ "$REAL" -eq 1 ]; then
    [ "$USE_APT" -eq 0 ] || install_apt_packages
    ensure_user
fi
ensure_dirs_and_config
code_before=$CHANGES
[ "$USE_VENV" -eq 0 ] || ensure_venv
ensure_wrapper
CODE_CHANGED=$((CHANGES - code_before))
UNIT_CHANGED=0
ensure_unit
run_systemctl "$CODE_CHANGED"

if [ "$CHANGES" -eq 0 ]; then
    say "done: nothing to change, already installed"
else
    say "done: $CHANGES change(s)"
fi
say "next: edit /etc/cunxiang/gateway.toml, then: cunxiang check-config -c /etc/cunxiang/gateway.toml"
say "      and: systemctl start $SERVICE; systemctl status $SERVICE"
