#!/usr/bin/env bash
# Make sure the two programs the web client's end-to-end test drives are
# installed: Debian's headless-capable Chromium (/usr/bin/chromium, launched by
# Playwright with executable_path; Playwright never downloads a browser here)
# and coturn's `turnserver` (the TURN relay the video test routes through).
# Installs them with apt-get when missing and we are root; otherwise says what
# to run. coturn is NOT started as a system service: the tests start their
# own turnserver on loopback and stop it.
set -euo pipefail

have_chromium() { [ -x /usr/bin/chromium ]; }
have_turnserver() { command -v turnserver >/dev/null 2>&1 || [ -x /usr/bin/turnserver ] || [ -x /usr/sbin/turnserver ]; }

if have_chromium && have_turnserver; then
  echo "Browser: /usr/bin/chromium and turnserver are installed"
  exit 0
fi

missing=""
have_chromium || missing="$missing chromium"
have_turnserver || missing="$missing coturn"

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<MSG
The web client's end-to-end test needs Debian's packages:$missing
Install them (coturn need not run as a service; the tests start their own):
    sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium coturn
MSG
  exit 1
fi

echo "Browser: installing Debian's$missing"
export DEBIAN_FRONTEND=noninteractive
# Debian's coturn package would start a system turnserver from its init
# script when a service manager runs; policy-rc.d 101 forbids that for the
# duration of this install (and is removed afterwards if we made it).
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends chromium coturn

if ! have_chromium || ! have_turnserver; then
  echo "Browser: install finished but /usr/bin/chromium or turnserver is still missing" >&2
  exit 1
fi
echo "Browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium) and coturn"
