#!/usr/bin/env bash
# Install (system libs, torch CPU, project with test extra) and run the whole test suite headless on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export QT_QPA_PLATFORM=offscreen NIPS_EXPLORER_THREADS=1 QT_LOGGING_RULES="qt.multimedia.*=false"
python3 -m pytest -q -ra "$@"
