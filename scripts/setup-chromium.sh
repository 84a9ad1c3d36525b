#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: the dashboard test renders the page in
# headless Chromium.
set -euo pipefail

if command -v chromium >/dev/null; then
    exit 0
fi
# Root installs directly; anyone else through sudo.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
echo "installing chromium"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
