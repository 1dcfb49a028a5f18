#!/usr/bin/env bash
# System packages the browser test needs (Debian's Chromium). Best effort: the
# browser test skips itself, saying how to enable it, where Chromium is missing.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
    && echo "installed $(chromium --version)" \
    || echo "warning: could not install chromium; the browser test will be skipped"
fi
exit 0
