#!/usr/bin/env bash
# Train a jetfm model on every GPU of a machine, or of several machines, with torchrun
# (PyTorch DDP through Lightning). Everything after the script name is one jetfm training
# command (pretrain, finetune, tokenizer train) with its options; the script adds --devices and
# --nodes so that Lightning matches torchrun's processes.
#
#   examples/cluster/torchrun.sh pretrain --data 'aoj/Run*_batch*.h5' \
#       --tokenizer runs/tokenizer/model -o runs/pretrain --preset paper --precision auto
#
# Several machines: run the same line on each, with NNODES, NODE_RANK (0 .. NNODES-1) and
# MASTER_ADDR (the address of node 0) set. Environment, with defaults:
#   NPROC        processes per node: the number of GPUs, or 2 on a machine without one
#   NNODES       number of nodes (1)
#   NODE_RANK    this node's rank (0)
#   MASTER_ADDR  address of node 0 (127.0.0.1);  MASTER_PORT  a free port there (29500)
#   PYTHON       the Python that has jetfm installed (.venv/bin/python if present, else python3)
#
# The batch size of the config is per process: the global batch is
# NPROC x NNODES x batch_size x --accumulate-grad-batches. Keep it when changing the number of
# processes (e.g. halve batch_size when doubling NPROC) and a run resumes where it stopped.
set -euo pipefail

if [ $# -eq 0 ]; then
    sed -n '2,20p' "$0"
    exit 2
fi
here="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
if [ -z "${NPROC:-}" ]; then
    NPROC="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
    [ "$NPROC" -gt 0 ] || NPROC=2
fi
NNODES="${NNODES:-1}"

exec "$PYTHON" -m torch.distributed.run \
    --nnodes "$NNODES" --node-rank "${NODE_RANK:-0}" --nproc-per-node "$NPROC" \
    --master-addr "${MASTER_ADDR:-127.0.0.1}" --master-port "${MASTER_PORT:-29500}" \
    -m jetfm "$@" --devices "$NPROC" --nodes "$NNODES"
