#!/usr/bin/env bash
# Install (if missing) and start what the integration tests need. Idempotent; Debian packages only.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "services.sh: need root to apt-get install ${need[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "services: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')"
