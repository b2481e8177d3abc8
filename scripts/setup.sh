#!/usr/bin/env bash
# Set up everything needed to run and test napari-lsdebm (idempotent).
#   - as root with apt-get: installs the Xvfb / Mesa / Qt system libraries if missing
#   - creates .venv with python3 if missing
#   - installs torch==2.13.0 only if torch is not importable in .venv
#   - installs this project editable with its viewer and test extras
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4
  libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
  libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1)

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip --version >/dev/null 2>&1 || "$PY" -m ensurepip --upgrade

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0"
  # Pinned, and installed before the project so that its `torch>=2.1` requirement is already
  # satisfied (a bare requirement with no torch present would pull the CUDA build).
  "$PY" -m pip install "torch==2.13.0"
fi

"$PY" -m pip install -e ".[viewer,test]"
echo "setup: done"
