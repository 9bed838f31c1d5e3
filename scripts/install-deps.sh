#!/usr/bin/env bash
# Installs the Debian packages torchquantx needs, only those that are missing (idempotent).
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build ccache
  libtorch-dev python3-torch python3-torchvision
  python3-dev python3-setuptools python3-wheel
  pybind11-dev python3-pytest python3-tqdm python3-numpy
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpuinfo-dev libdnnl-dev
  dataset-fashion-mnist
  python3-venv python3-pip
  python3-onnx python3-matplotlib chromium
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "torchquantx: installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
