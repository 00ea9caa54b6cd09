#!/usr/bin/env bash
# Install Debian's Chromium for the web UI's browser tests (tests/e2e). Idempotent: when
# /usr/bin/chromium already runs it returns at once. The tests drive it with Playwright's Python
# package pointed at this binary (never `playwright install`, which downloads a browser build).
set -euo pipefail

if [ -x /usr/bin/chromium ] && /usr/bin/chromium --version >/dev/null 2>&1; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: installing chromium needs root (or sudo)" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps it to the browser and its libraries; fonts-dejavu-core gives the
# page a font to render with in a minimal image.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"
