#!/usr/bin/env bash
# Regenerates docs/demo.jpg: `fsanet demo` with the authors' 300W-LP fusion (ONNX) and OpenCV's
# Haar face detector on six photos of ../shared/data/aflw2000-sample (profiles both ways, frontal).
# Usage: docs/demo-picture.sh [MODEL [real]]   (default: out/fsanet-fusion-300wlp.onnx, built if missing)
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
A=$SHARED/aflw2000-sample   # MIT-licensed (PRNet's test images): the picture may be committed
$FSANET demo \
  "$A/image00516.jpg" "$A/image02283.jpg" "$A/image00050.jpg" \
  "$A/image03614.jpg" "$A/image04331.jpg" "$A/image02420.jpg" \
  -m "$MODEL" --montage 3 -o docs/demo.jpg
# The same check on the research-only real-faces photos, with their 68 landmarks, stays local
# (never committed): docs/demo-picture.sh real
if [ "${2:-}" = real ]; then
  R=$SHARED/real-faces
  $FSANET demo \
    "$R/afw/174692320_1.jpg" "$R/afw/1051618982_1.jpg" "$R/afw/14424972_1.jpg" \
    "$R/helen-trainset/2106789492_1.jpg" "$R/helen-trainset/2078419146_1.jpg" "$R/afw/2653111362_1.jpg" \
    -m "$MODEL" --landmarks --montage 3 -o out/demo-real-faces.jpg
fi
