#!/bin/sh
# Installs bubblewrap (bwrap), the sandbox every student kernel is graded in (autograder/sandbox/bubblewrap.py).
# Idempotent: does nothing when it is already there. Needs root (CI runs as root; otherwise use sudo).
set -eu

if command -v bwrap >/dev/null 2>&1; then
    echo "bubblewrap already installed: $(bwrap --version)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_bubblewrap.sh: installing bubblewrap needs root (try: sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
sh "$(dirname "$0")/step.sh" "installing bubblewrap (Debian package bubblewrap)" \
    sh -c 'apt-get update && apt-get install -y bubblewrap'
echo "installed: $(bwrap --version)"
