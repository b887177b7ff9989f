#!/usr/bin/env bash
# Make sure `promtool` is installed: the deploy tests run `promtool check rules`
# on deploy/k8s/components/monitoring and `promtool check metrics` on each
# running service's /metrics. Debian's `prometheus` package ships it. Installed
# with apt-get when missing and we are root (the Prometheus server the package
# also brings is NOT started: policy-rc.d forbids it during the install, and it
# is stopped again if the package's scripts started it anyway); otherwise says
# what to run.
set -euo pipefail

have_promtool() { command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ]; }

if have_promtool; then
  echo "promtool: installed ($(promtool --version 2>&1 | head -n 1))"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<MSG
The deploy tests need promtool, from Debian's prometheus package:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus
(the Prometheus server it brings need not run; the tests only call promtool)
MSG
  exit 1
fi

echo "promtool: installing Debian's prometheus package"
export DEBIAN_FRONTEND=noninteractive
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends prometheus

if ! have_promtool; then
  echo "promtool: install finished but promtool is still missing" >&2
  exit 1
fi
echo "promtool: installed ($(promtool --version 2>&1 | head -n 1))"
