#!/usr/bin/env bash
# Headless browser for tests/test_report.py: Debian's chromium and its matching chromedriver.
# Idempotent: installs only when /usr/bin/chromium or /usr/bin/chromedriver is missing.
# Called by .ci/run and by `make test`; needs root (or sudo) when it has something to install.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "browser_deps: chromium and chromedriver present"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "browser_deps: need root (or sudo) to apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver

for exe in /usr/bin/chromium /usr/bin/chromedriver; do
    if [[ ! -x "$exe" ]]; then
        echo "browser_deps: $exe still missing after apt-get install" >&2
        exit 1
    fi
done
/usr/bin/chromium --version
/usr/bin/chromedriver --version
