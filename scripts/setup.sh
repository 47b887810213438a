#!/usr/bin/env bash
# Installs the Debian packages lightreasoner links against (skipped when pkg-config already finds them)
# and builds the release binaries. Safe to run repeatedly. Stdout carries only the binary's path (callers
# capture it); everything else, apt-get and the build included, goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
for name in openblas libzmq ompi; do pkg-config --exists "$name" >/dev/null 2>&1 || missing=1; done
command -v mpirun >/dev/null 2>&1 || missing=1
if [ "$missing" -eq 1 ]; then
  echo "setup: installing libopenblas-dev libzmq3-dev libopenmpi-dev openmpi-bin pkg-config" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libopenblas-dev libzmq3-dev libopenmpi-dev openmpi-bin pkg-config
  } >&2
fi
swift build -c release --product lightreasoner >&2
bin_dir=$(swift build -c release --show-bin-path 2>/dev/null)
echo "$bin_dir/lightreasoner"
