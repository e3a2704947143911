#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test icd. Idempotent: packages already
# present are not fetched again. Needs root (or sudo).
#   scripts/setup.sh            build + test dependencies
#   scripts/setup.sh --torch    also Debian's python3-torch/torchvision (tools/ fixtures, tools/bench_torch.py)
set -euo pipefail

packages=(build-essential cmake ccache git pkg-config
          libeigen3-dev libstb-dev doctest-dev nlohmann-json3-dev libcli11-dev
          dataset-fashion-mnist)
if [[ "${1:-}" == "--torch" ]]; then
  # OpenBLAS: without it torch falls back to the reference BLAS (about 6 GFLOP/s) and every comparison is void.
  packages+=(python3-torch python3-torchvision python3-numpy libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages already installed"
else
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Downloads cached outside git (idempotent). The build needs none of them; tests that do say so when skipped.
"$(dirname "$0")/fetch_weights.sh" || echo "setup: WARNING: fetch_weights.sh failed; the ImageNet weight test will be skipped" >&2
"$(dirname "$0")/fetch_dataset_sources.sh" ||
  echo "setup: WARNING: fetch_dataset_sources.sh failed; the built-in dataset cannot be built" >&2
