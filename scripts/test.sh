#!/usr/bin/env bash
# Install (system libraries, torch, the app with its test extra, in .venv), run the static checks
# (scripts/check.sh: ruff, import contracts, mypy) and the whole test suite headless on the CPU.
# Arguments go to pytest; NIPS_EXPLORER_SKIP_CHECKS=1 skips the static checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
[ -n "${NIPS_EXPLORER_SKIP_CHECKS:-}" ] || bash scripts/check.sh
export QT_QPA_PLATFORM=offscreen NIPS_EXPLORER_THREADS=1 QT_LOGGING_RULES="qt.multimedia.*=false"
exec "${NIPS_EXPLORER_VENV:-.venv}/bin/python" -m pytest -q -ra "$@"
