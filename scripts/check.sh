#!/usr/bin/env bash
# The static checks (lint, format, import contracts, types), as CI runs them before the tests:
#   bash scripts/check.sh            (after scripts/install.sh --test; scripts/test.sh runs it first)
#   .venv/bin/ruff format .          fixes the formatting; .venv/bin/ruff check --fix . the fixable lint
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${NIPS_EXPLORER_VENV:-.venv}/bin"
fail=0
step() { printf 'check: %s\n' "$1" >&2; shift; "$@" || { fail=1; printf 'check: FAILED: %s\n' "$*" >&2; }; }
step "ruff lint" "$BIN/ruff" check --quiet .
step "ruff format" "$BIN/ruff" format --check --quiet .
contracts() { local out; out=$("$BIN/lint-imports" --no-cache 2>&1) || { printf '%s\n' "$out" >&2; return 1; }; }
step "import contracts" contracts
step "types (mypy)" "$BIN/mypy" --no-error-summary
exit $fail
