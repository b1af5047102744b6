#!/usr/bin/env bash
# Make sure the command-line tools the test suite calls are installed: today only promtool.
#
# Why: tests/unit/ops/test_alerts_promtool.py runs `promtool check rules` and
# `promtool test rules` on deploy/prometheus/ (issue 5: CI checks the alert rules), and a test
# that needs a tool never skips. Debian's package `prometheus` ships promtool. Idempotent: when
# promtool is already on PATH this exits 0 at once without touching apt.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf 'ensure-tools: %s\n' "$*" >&2; }
die() {
    printf 'ensure-tools: ERROR: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi

log "promtool missing: installing Debian package prometheus"
as_root apt-get update -qq
# --no-install-recommends: we want the binaries, not a running Prometheus server's extras.
as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a Prometheus server on :9090 under systemd where there is one; the
# tests need only the promtool binary, so a started service is stopped again (best effort).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    as_root systemctl stop prometheus || true
fi
command -v promtool >/dev/null 2>&1 || die "promtool still not on PATH after installing prometheus"
log "promtool $(promtool --version 2>&1 | head -n1)"
