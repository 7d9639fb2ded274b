#!/usr/bin/env bash
# Make sure Fashion-MNIST is on disk (Debian package dataset-fashion-mnist). Exit 0 when it is.
set -u
dir=/usr/share/datasets/fashion-mnist
have() { [ -f "$dir/train-images-idx3-ubyte.gz" ] && [ -f "$dir/t10k-images-idx3-ubyte.gz" ]; }
have && exit 0
if [ -n "${VAEKIT_DATA:-}" ] && [ -d "$VAEKIT_DATA/fashion-mnist" ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Fashion-MNIST: apt-get install dataset-fashion-mnist ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1
  have && exit 0
  echo "could not install dataset-fashion-mnist with apt-get" >&2
else
  echo "Fashion-MNIST is not installed. As root run: apt-get install dataset-fashion-mnist" >&2
  echo "(or put its four IDX files in \$VAEKIT_DATA/fashion-mnist/)." >&2
fi
exit 1
