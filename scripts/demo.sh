#!/usr/bin/env bash
# The main job: train a convolutional VAE on Fashion-MNIST for 2000 steps (a few minutes on 2 CPU
# cores) and leave a run folder to look at. Falls back to scikit-learn's 8x8 digits when
# Fashion-MNIST is not installed and cannot be.
set -euo pipefail
venv=${VENV:-.venv}
vaekit="$venv/bin/vaekit"
data=fashion-mnist
if ! bash scripts/ensure-data.sh; then
  data=digits
  echo "=> Fashion-MNIST is unavailable: falling back to scikit-learn's bundled 8x8 digits." >&2
fi
out=runs/demo-$(date +%Y%m%d-%H%M%S)
"$vaekit" train vae --data "$data" --steps 2000 --seed 0 --out "$out"
"$vaekit" sample "$out" -n 64 -o "$out/samples-seed1.png" --seed 1
echo
echo "Done. Look at $out/report.md (or report.html in a browser), with $out/reconstructions.png, samples.png, interpolations.png"
echo "and loss_curves.png beside it. Try next:  $vaekit evaluate $out"
