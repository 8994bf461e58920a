#!/usr/bin/env bash
# Install what Meridian's interop tests need, idempotently:
#   * Debian packages: chrony (chronyd -x as a reference server, chronyd -Q
#     as a query-only client), ntpsec-ntpdate (ntpdig and ntpsec's ntpdate
#     shim), ntpstat, iproute2 (ip netns), util-linux (setpriv),
#     python3-ntp and ntpsec's shared-library dependencies;
#   * the ntpsec package itself (ntpd, ntpq), which conflicts with chrony and
#     is therefore only downloaded and unpacked into $MERIDIAN_NTPSEC_DIR
#     (default: <repo>/target/ntpsec), never installed.
# No service is ever started: /usr/sbin/policy-rc.d is made to exit 101
# before anything is installed, and the script fails if a chronyd/ntpd
# process appears while it runs.
# Without root it prints a notice and exits 0 (the tests then skip; with
# CI set they fail instead).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NTPSEC_DIR=${MERIDIAN_NTPSEC_DIR:-$ROOT/target/ntpsec}
PACKAGES=(chrony ntpsec-ntpdate ntpstat iproute2 util-linux python3 python3-ntp
          libbsd0 libcap2 libssl3
          chromium fonts-dejavu-core)  # tests/web_status.rs: headless browser, and a font

log() { echo "install-test-deps: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "not root: cannot install packages; interop tests will skip"
    exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    log "no apt-get/dpkg: install ${PACKAGES[*]} by hand; interop tests will skip"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive

# 1. Never let package scripts start services.
POLICY=/usr/sbin/policy-rc.d
policy_ok() { [ -x "$POLICY" ] && { "$POLICY" chrony start >/dev/null 2>&1; [ $? -eq 101 ]; }; }
if ! policy_ok; then
    [ -e "$POLICY" ] && cp -p "$POLICY" "$POLICY.meridian-orig"
    printf '#!/bin/sh\n# Installed by meridian scripts/install-test-deps.sh: start no services.\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    log "installed $POLICY (exit 101)"
fi

time_daemons() { { pgrep -x chronyd; pgrep -x ntpd; } 2>/dev/null | sort -n || true; }
BEFORE=$(time_daemons)

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}

# 2. Debian packages.
missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_update_once
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 3. ntpsec, unpacked only (the package conflicts with chrony).
if [ ! -x "$NTPSEC_DIR/usr/sbin/ntpd" ] || [ ! -f "$NTPSEC_DIR/usr/bin/ntpq" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    chmod 777 "$tmp"   # apt-get download runs as _apt when it can
    apt-cache show ntpsec >/dev/null 2>&1 || apt_update_once
    if ! (cd "$tmp" && apt-get download -qq ntpsec >/dev/null 2>&1); then
        apt_update_once
        (cd "$tmp" && apt-get download -qq ntpsec)
    fi
    rm -rf "$NTPSEC_DIR"
    mkdir -p "$NTPSEC_DIR"
    dpkg -x "$tmp"/ntpsec_*.deb "$NTPSEC_DIR"
    log "unpacked $(dpkg-deb -f "$tmp"/ntpsec_*.deb Version) into $NTPSEC_DIR"
fi
if ldd "$NTPSEC_DIR/usr/sbin/ntpd" | grep -q 'not found'; then
    log "ntpsec ntpd has missing libraries:"
    ldd "$NTPSEC_DIR/usr/sbin/ntpd" | grep 'not found' >&2
    exit 1
fi
"$NTPSEC_DIR/usr/sbin/ntpd" --version >/dev/null
/usr/bin/python3 "$NTPSEC_DIR/usr/bin/ntpq" --version >/dev/null

# 4. Nothing may have started a time daemon.
AFTER=$(time_daemons)
NEW=$(comm -13 <(echo "$BEFORE") <(echo "$AFTER") | grep -v '^$' || true)
if [ -n "$NEW" ]; then
    log "BUG: a time daemon was started during installation (pids: $NEW); stopping it"
    for pid in $NEW; do kill "$pid" 2>/dev/null || true; done
    exit 1
fi
log "ok"
