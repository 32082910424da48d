#!/usr/bin/env bash
# Dask-cuDF runs on a machine with several GPUs (nvidia-h100-x2). Carry .gpu/cudf.tar.xz, .gpu/py.tar.xz and
# .gpu/dask.tar.xz (dask, distributed, dask-cuda, dask-cudf-cu13 and the few dependencies the device lacks).
set -uo pipefail
# Every part runs even when one fails (its output still matters); the script's exit status says whether any did.
status=0
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
date -u
python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_rapids_multigpu.py 2>&1 \
  | grep -v -E "WARNING|^\s*$" | tail -25 | tee "$OUT/multigpu_tests.log" || status=1
# 100M rows, all ops, cuDF vs Dask-cuDF with pandas as the reference: measured on 2026-11-26 (BENCHMARKS.md);
# run it again with MULTIGPU_100M=1.
if [ "${MULTIGPU_100M:-0}" = 1 ]; then
  python3 bench/rapids_benchmark.py --rows 100000000 --repeats 3 --engines cudf,dask_cudf 2>&1 \
    | grep -v "WARNING" | tee "$OUT/multigpu_100m.log" || status=1
fi
# 1B rows on Dask-cuDF alone (beyond one card with the app's memory margins), results self-checked. Without
# the sort: over TCP the shuffle sort takes ~14 s per pass at 100M, ~10x that at 1B.
timeout "${MULTIGPU_1B_TIMEOUT:-360}" python3 bench/rapids_benchmark.py --rows 1000000000 --repeats 1 \
  --engines cudf,dask_cudf --ops filter,groupby_few,groupby_many,join --progress 2>&1 | grep -v "WARNING" \
  | tee "$OUT/multigpu_1b.log" || status=1
exit "$status"
