#!/usr/bin/env bash
# Install Meridian: the binary, its classic names (ntpd, ntpdate, ntpq, ntpstat), the
# systemd unit and a default /etc/ntp.conf (only if there is none).
#
#   dist/install.sh [--prefix DIR] [--destdir DIR] [--bin FILE] [--sysconfdir DIR]
#                   [--unitdir DIR] [--statedir DIR] [--force]
#
#   --prefix DIR      where bin/ and sbin/ go (default /usr/local)
#   --destdir DIR     stage everything under DIR (for packaging); the installed files
#                     still refer to the final paths
#   --bin FILE        the binary to install (default target/release/meridian)
#   --sysconfdir DIR  where ntp.conf goes (default /etc)
#   --unitdir DIR     where the unit goes (default /usr/lib/systemd/system for
#                     --prefix /usr, else /etc/systemd/system)
#   --statedir DIR    the drift file's directory (default /var/lib/meridian)
#   --force           replace classic names that are not links to Meridian (e.g. an
#                     ntpd from another package); by default those are left alone
#
# Idempotent: running it again installs the same tree, replaces the binary atomically
# (a running daemon keeps its old copy), and never overwrites an existing ntp.conf.
# It enables and starts nothing: see the closing message for that.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

PREFIX=/usr/local
DESTDIR=
BIN=$ROOT/target/release/meridian
SYSCONFDIR=/etc
UNITDIR=
STATEDIR=/var/lib/meridian
FORCE=0

log() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
        --destdir=*) DESTDIR=${1#*=}; shift ;;
        --bin) BIN=${2:?--bin needs a file}; shift 2 ;;
        --bin=*) BIN=${1#*=}; shift ;;
        --sysconfdir) SYSCONFDIR=${2:?--sysconfdir needs a directory}; shift 2 ;;
        --sysconfdir=*) SYSCONFDIR=${1#*=}; shift ;;
        --unitdir) UNITDIR=${2:?--unitdir needs a directory}; shift 2 ;;
        --unitdir=*) UNITDIR=${1#*=}; shift ;;
        --statedir) STATEDIR=${2:?--statedir needs a directory}; shift 2 ;;
        --statedir=*) STATEDIR=${1#*=}; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
done

for p in "$PREFIX" "$SYSCONFDIR" "$STATEDIR" ${UNITDIR:+"$UNITDIR"}; do
    case $p in /*) ;; *) die "'$p' must be an absolute path" ;; esac
done
PREFIX=${PREFIX%/} # "" for /, so that "$PREFIX/sbin" is /sbin
if [ -z "$UNITDIR" ]; then
    if [ "$PREFIX" = /usr ] || [ -z "$PREFIX" ]; then UNITDIR=/usr/lib/systemd/system; else UNITDIR=/etc/systemd/system; fi
fi
if [ -n "$DESTDIR" ]; then
    mkdir -p "$DESTDIR"
    DESTDIR=$(cd "$DESTDIR" && pwd)
fi
[ -f "$BIN" ] && [ -x "$BIN" ] || die "no binary at $BIN (build it: cargo build --release, or pass --bin)"
"$BIN" --version >/dev/null 2>&1 || die "$BIN does not run"

SBIN=$PREFIX/sbin
BINDIR=$PREFIX/bin
DOCDIR=$PREFIX/share/doc/meridian

install -d -m 0755 "$DESTDIR$SBIN" "$DESTDIR$BINDIR" "$DESTDIR$DOCDIR" \
    "$DESTDIR$SYSCONFDIR" "$DESTDIR$UNITDIR" "$DESTDIR$STATEDIR"

# 1. The binary: copied beside the target, then renamed over it, so a running daemon
#    is never executing a half-written file.
tmp="$DESTDIR$SBIN/.meridian.new.$$"
trap 'rm -f "$tmp"' EXIT
install -m 0755 "$BIN" "$tmp"
mv -f "$tmp" "$DESTDIR$SBIN/meridian"
log "installed $SBIN/meridian ($("$DESTDIR$SBIN/meridian" --version))"

# 2. Classic names, as relative links so the staged tree is relocatable.
link() { # link NAME DIR TARGET
    local path=$DESTDIR$2/$1
    if [ -e "$path" ] || [ -L "$path" ]; then
        if [ -L "$path" ] && [ "$(readlink "$path")" = "$3" ]; then
            return 0
        fi
        if [ -L "$path" ] && [ "$(basename "$(readlink "$path")")" = meridian ]; then
            :
        elif [ "$FORCE" -ne 1 ]; then
            log "kept $2/$1: it is not Meridian's (use --force to replace it)"
            return 0
        fi
    fi
    ln -sfn "$3" "$path"
    log "linked $2/$1 -> $3"
}
link ntpd "$SBIN" meridian
link ntpdate "$SBIN" meridian
link ntpq "$BINDIR" ../sbin/meridian
link ntpstat "$BINDIR" ../sbin/meridian

# 3. The unit, pointing at the installed paths.
unit_tmp="$DESTDIR$UNITDIR/.meridian.service.new.$$"
sed -e "s|/usr/sbin/meridian|$SBIN/meridian|g" \
    -e "s|/usr/share/doc/meridian|$DOCDIR|g" \
    -e "s| -c /etc/ntp.conf| -c $SYSCONFDIR/ntp.conf|g" \
    "$HERE/meridian.service" >"$unit_tmp"
chmod 0644 "$unit_tmp"
mv -f "$unit_tmp" "$DESTDIR$UNITDIR/meridian.service"
log "installed $UNITDIR/meridian.service"

# 4. The configuration, only when there is none: an administrator's file is never
#    touched.
if [ -e "$DESTDIR$SYSCONFDIR/ntp.conf" ]; then
    log "kept the existing $SYSCONFDIR/ntp.conf"
else
    sed -e "s|^driftfile /var/lib/meridian/|driftfile $STATEDIR/|" "$HERE/ntp.conf" \
        >"$DESTDIR$SYSCONFDIR/ntp.conf"
    chmod 0644 "$DESTDIR$SYSCONFDIR/ntp.conf"
    log "installed $SYSCONFDIR/ntp.conf"
fi

# 5. Documentation (the unit's Documentation=).
install -m 0644 "$ROOT/README.md" "$DESTDIR$DOCDIR/README.md"

if [ -z "$DESTDIR" ]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null && [ "$(id -u)" -eq 0 ]; then
        systemctl daemon-reload || true
    fi
    log "done. Check the configuration:  $SBIN/ntpd --check -c $SYSCONFDIR/ntp.conf"
    log "then start it:                  systemctl enable --now meridian"
    log "(stop and disable any other time daemon first: systemd-timesyncd, chrony, ntp)"
else
    log "staged under $DESTDIR"
fi
