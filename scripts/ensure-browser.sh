#!/usr/bin/env bash
# Make sure Debian's Chromium is on disk for the explorer's browser tests (tests/test_explorer.py drives
# /usr/bin/chromium with Playwright; no browser is ever downloaded). Exit 0 when it is; otherwise say why,
# and the browser tests skip with that reason.
set -u
have() { [ -x /usr/bin/chromium ]; }
have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Chromium for the browser tests: apt-get install chromium chromium-driver ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1
  have && exit 0
  echo "could not install chromium with apt-get: the explorer's browser tests will skip" >&2
else
  echo "Chromium is not installed, so the explorer's browser tests will skip. As root run: apt-get install chromium" >&2
fi
exit 1
