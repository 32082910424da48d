#!/usr/bin/env bash
# Dask-cuDF runs on a machine with several GPUs (nvidia-h100-x2). Carry .gpu/cudf.tar.xz, .gpu/py.tar.xz and
# .gpu/dask.tar.xz (dask, distributed, dask-cuda, dask-cudf-cu13 and the few dependencies the device lacks).
set -u
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
date -u
python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_rapids_multigpu.py tests/gpu/test_rapids_gpu.py 2>&1 \
  | grep -v -E "WARNING|^\s*$" | tail -25 | tee "$OUT/multigpu_tests.log"
python3 bench/rapids_benchmark.py --rows 100000000 --repeats 3 --engines cudf,dask_cudf 2>&1 \
  | grep -v "WARNING" | tee "$OUT/multigpu_100m.log"
timeout 330 python3 bench/rapids_benchmark.py --rows 1000000000 --repeats 1 --engines cudf,dask_cudf 2>&1 \
  | grep -v "WARNING" | tee "$OUT/multigpu_1b.log"
