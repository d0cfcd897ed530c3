#!/usr/bin/env bash
# Installs the Debian 12 packages stylus-catalog builds and tests with.
# Skips apt entirely when every package is already installed.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang
      libcurl4-openssl-dev libxml2-dev liblmdb-dev lmdb-utils libzmq3-dev libmsgpack-dev
      libopenblas-dev libjansson-dev libmicrohttpd-dev libyaml-dev iproute2
      python3 python3-numpy python3-zmq python3-msgpack)
# --list: print the package names (for CI's own apt-get line) and stop.
if [ "${1:-}" = "--list" ]; then
  echo "${pkgs[@]}"
  exit 0
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
