#!/usr/bin/env bash
# Install vqa-monitor into .venv at the repository root.
#   scripts/install.sh          runtime only (the daemon)
#   scripts/install.sh --test   plus test dependencies, training extras and the Debian servers the tests start
# Needs a Debian machine with Python 3.11; runs apt-get itself (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

apt_packages=()
python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "vqa-monitor needs Python 3.11 (found $("$python" --version 2>&1))" >&2; exit 1; }
"$python" -c 'import ensurepip, venv' 2>/dev/null || apt_packages+=(python3.11-venv)
if (( want_test )); then
    apt_packages+=(
        gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gir1.2-gstreamer-1.0 python3-gi
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
        gstreamer1.0-plugins-bad gstreamer1.0-libav
        ffmpeg prometheus prometheus-alertmanager opencv-data systemd
        chromium
    )
fi

missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to the CPU build everywhere; an unpinned torch would pull gigabytes of CUDA.
constraints=$(mktemp); trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
if (( want_test )); then
    .venv/bin/python -m pip install -q -c "$constraints" torch==2.13.0
    .venv/bin/python -m pip install -q -c "$constraints" -e '.[test,train]'
else
    .venv/bin/python -m pip install -q -c "$constraints" -e .
fi
