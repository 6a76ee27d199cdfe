#!/usr/bin/env bash
# Install the Debian packages sailvl needs, idempotently: `apt-get update` runs once, and only
# when something is missing. Safe to run again and again.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config git
      libeigen3-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
      libpcre2-dev libutf8proc-dev libpng-dev libjpeg62-turbo-dev libwebp-dev libedit-dev libssl-dev libcpp-httplib-dev curl
      clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
