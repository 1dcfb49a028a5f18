#!/usr/bin/env bash
# System packages the browser test needs (Debian's Chromium). Best effort here:
# where Chromium is missing the browser test says how to enable it, and fails
# under CI (a green run must have looked at the site) or skips elsewhere.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
    && echo "installed $(chromium --version)" \
    || echo "warning: could not install chromium; the browser test will fail under CI"
fi
exit 0
