#!/usr/bin/env bash
# Set up, then run the whole pipeline on the built-in demo: three stages, then the --test scorecard.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
python train_mlx.py --demo --test "$@"
