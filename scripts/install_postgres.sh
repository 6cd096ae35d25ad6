#!/bin/sh
# Installs the PostgreSQL server that tests/test_postgres.py starts on loopback (Debian's postgresql).
# Idempotent: does nothing when a server binary is already there. Needs root (CI runs as root).
set -eu

for folder in /usr/lib/postgresql/*/bin /usr/local/bin /usr/local/pgsql/bin; do
    if [ -x "$folder/initdb" ] && [ -x "$folder/pg_ctl" ]; then
        echo "postgresql already installed: $("$folder/pg_ctl" --version)"
        exit 0
    fi
done

if [ "$(id -u)" -ne 0 ]; then
    echo "install_postgres.sh: installing postgresql needs root (try: sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
sh "$(dirname "$0")/step.sh" "installing postgresql (Debian package postgresql)" \
    sh -c 'apt-get update && apt-get install -y --no-install-recommends postgresql'
echo "installed: $(ls -d /usr/lib/postgresql/*/bin)"
