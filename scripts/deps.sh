#!/bin/sh
# Installs the Debian 12 packages that building, testing and the demo need,
# and only those that are missing.  Needs root (or sudo) when something is
# missing; does nothing otherwise.
set -eu
PKGS="gcc make pkg-config libpaho-mqtt-dev libjson-c-dev libconfig-dev
libcmocka-dev libssl-dev mosquitto mosquitto-clients qemu-system-x86
python3 python3-paho-mqtt python3-jinja2 procps valgrind"
# Manual pages (make man-lint, tests/e2e/test_systemd.py: mandoc -T lint)
# and the unit check (systemd-analyze verify, in Debian's systemd package).
PKGS="$PKGS mandoc systemd"
# Secured and clustered brokers (tests/e2e/test_tls.py, test_cluster.py):
# openssl makes the test PKI, ejabberd is the clustered broker.  The
# Debian package may start its own ejabberd service; the tests use
# private nodes (own names, ports, dirs) and never touch it.
PKGS="$PKGS openssl ejabberd"
# The fleet page's browser test (tests/e2e/test_web.py): Debian's chromium,
# and node/npm unless an npm is there already (a nodesource nodejs ships
# its own and conflicts with Debian's npm package).
PKGS="$PKGS chromium"
# gdb: a QEMU that stops answering a test's monitor has its threads' stacks
# printed in the failure (tests/e2e/harness.py, qemu_stacks).
PKGS="$PKGS gdb"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
[ -n "${EXTRA_PKGS:-}" ] && PKGS="$PKGS $EXTRA_PKGS"
missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$st" in ii*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done"
