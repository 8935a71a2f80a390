#!/usr/bin/env bash
# Install (system libs, torch CPU, project) and launch the app.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec nips-explorer "$@"
