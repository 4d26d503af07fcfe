#!/bin/sh
# Installs the Debian 12 packages nvent needs, only those that are missing.
# Called by `make run` and `make check`; safe to run again.
set -eu
PKGS="build-essential pkg-config libjansson-dev libsqlite3-dev libmicrohttpd-dev
libhiredis-dev uthash-dev libcriterion-dev tzdata redis-server nodejs python3"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "nvent: installing missing packages:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
