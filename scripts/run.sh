#!/usr/bin/env bash
# Install (system libraries, torch, the app, in the virtual environment .venv) and launch the app.
# Later runs reuse .venv and skip the install when nothing changed. Arguments go to nips-explorer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${NIPS_EXPLORER_VENV:-.venv}/bin/nips-explorer" "$@"
