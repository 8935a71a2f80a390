#!/usr/bin/env bash
# Install (system libraries, torch, the app with its test extra, in .venv) and run the whole test suite
# headless on the CPU. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export QT_QPA_PLATFORM=offscreen NIPS_EXPLORER_THREADS=1 QT_LOGGING_RULES="qt.multimedia.*=false"
exec "${NIPS_EXPLORER_VENV:-.venv}/bin/python" -m pytest -q -ra "$@"
