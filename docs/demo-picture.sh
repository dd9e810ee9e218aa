#!/usr/bin/env bash
# Regenerates docs/demo.jpg: `fsanet demo` with the authors' 300W-LP fusion (ONNX) and OpenCV's
# Haar face detector on six photos of ../shared/data/real-faces (left profiles, frontal, right
# profiles), their 68 .pts landmarks drawn in yellow to compare the axes with.
# Usage: docs/demo-picture.sh [MODEL]   (default: out/fsanet-fusion-300wlp.onnx, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
FSANET=${FSANET:-.venv/bin/python -m fsanet}
MODEL=${1:-out/fsanet-fusion-300wlp.onnx}
W=$SHARED/official/pre-trained/300W_LP_models
if [ ! -f "$MODEL" ]; then
  $FSANET import-keras "$W"/fsanet_{capsule_3_16_2_21_5,var_capsule_3_16_2_21_5,noS_capsule_3_16_2_192_5}/*.h5 \
    -o out/fsanet-fusion-300wlp.pt
  $FSANET export out/fsanet-fusion-300wlp.pt --to onnx --verify "$SHARED/real-faces" -o out
  MODEL=out/fsanet-fusion-300wlp.onnx
fi
R=$SHARED/real-faces
$FSANET demo \
  "$R/afw/174692320_1.jpg" "$R/afw/1051618982_1.jpg" "$R/afw/14424972_1.jpg" \
  "$R/helen-trainset/2106789492_1.jpg" "$R/helen-trainset/2078419146_1.jpg" "$R/afw/2653111362_1.jpg" \
  -m "$MODEL" --landmarks --montage 3 -o docs/demo.jpg
