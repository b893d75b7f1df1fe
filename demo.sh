#!/usr/bin/env bash
# The demo: 1,000 synthetic faces at 64x64, a short run through all three phases, then
# test.py's grids and metrics. About 9 minutes on a 2-core CPU (see README.md).
# It overwrites data/npy/ and moves an earlier backup/ aside (train.py --fresh).
set -euo pipefail
cd "$(dirname "$0")"
SIZE=(--IMAGE_SIZE=64 --LOCAL_SIZE=32 --HOLE_MIN=12 --HOLE_MAX=24)
python to_npy.py --demo 1000 "${SIZE[@]}"
python train.py --fresh "${SIZE[@]}" --PRETRAIN_EPOCH=5 --D_EPOCH=1 --MAX_EPOCH=7 "$@"
python test.py
