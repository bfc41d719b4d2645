#!/usr/bin/env bash
# Create .venv and install recsys into it (editable), with optional extras: bash scripts/setup.sh [dev|bench|dev,bench]
# Installs PyTorch 2.13.0 first when the venv has no torch (a CPU build where one is available locally),
# so pip does not pull the newest multi-GB CUDA build for a plain `torch` requirement.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==2.13.0" >&2
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
echo "setup: installing recsys${extras:+ with extras [$extras]}" >&2
.venv/bin/python -m pip install -q -e "$target"
case ",$extras," in
  *,dev,*)  # RecBole 1.2.1 (the SASRec peer, tested in CI) without the ray/tensorboard/plotly/thop it declares:
            # training SASRec imports none of them (recsys/benchmarks/peers_recbole.py); a few seconds, ~10 MB
    echo "setup: installing recbole 1.2.1 (--no-deps) for the RecBole peer tests" >&2
    .venv/bin/python -m pip install -q --no-deps "recbole==1.2.1" "colorlog==4.7.2" "colorama==0.4.4" "texttable>=1.6" ;;
esac
# Compile the numba CPU loops (BPR, SGNS, top-k selection, Dice) into their caches (__pycache__) once, here, instead of in
# the first fit or test that runs them (about 30-60 s of CPU on 2 cores; later processes load them in about 1 s).
echo "setup: compiling the numba kernels" >&2
.venv/bin/python -c "from recsys.training import bpr_kernel, sgns_kernel; from recsys.evaluation import topk; from recsys.nn import dice_kernels; bpr_kernel.load(); sgns_kernel.load(); topk.load(); dice_kernels.load()"
