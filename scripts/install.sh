#!/usr/bin/env bash
# Install everything NIPS Explorer needs on Debian/Ubuntu with Python 3.11:
# Qt/OpenGL/audio runtime libraries (apt-get), the CPU build of torch, then the project.
# Usage: bash scripts/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES=(xvfb xauth libgl1 libegl1 libglx-mesa0 libegl-mesa0 libgl1-mesa-dri libfontconfig1 libxkbcommon0
  libglib2.0-0 libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
  libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libpulse0 pulseaudio pulseaudio-utils
  espeak-ng)   # espeak-ng: training voices and the fluent digit strings (and their tests)
if command -v apt-get >/dev/null && [ -z "${NIPS_EXPLORER_SKIP_APT:-}" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
PY=${PYTHON:-python3}
# torch first: the local CPU build; a newer torch would pull several GB of CUDA wheels
$PY -m pip install -q "torch==2.13.0"
if [ "${1:-}" = "--test" ]; then
  $PY -m pip install -q -e ".[test]"
else
  $PY -m pip install -q -e .
fi
