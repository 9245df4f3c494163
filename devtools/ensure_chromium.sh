#!/usr/bin/env bash
# The browser tests (tests/test_browser.py) drive Debian's chromium through
# Playwright's executable_path: Playwright never downloads a browser here.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "==> $CHROMIUM not found: installing chromium from Debian"
if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
"$CHROMIUM" --version
