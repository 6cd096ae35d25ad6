#!/bin/sh
# Installs the browser that tests/test_browser.py drives: Debian's chromium at /usr/bin/chromium.
# Idempotent: does nothing when it is already there. Needs root (CI runs as root; otherwise use sudo).
# Playwright's own browser download (`playwright install`) is deliberately not used.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser.sh: installing chromium needs root (try: sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# With its recommends: they bring the fonts that screenshots need (fonts-liberation).
sh "$(dirname "$0")/step.sh" "installing chromium (Debian package chromium)" \
    sh -c 'apt-get update && apt-get install -y chromium'
echo "installed: $("$CHROMIUM" --version 2>/dev/null)"
