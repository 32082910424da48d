#!/usr/bin/env bash
# Polars' GPU engine (cudf-polars-cu13 26.10.2) on the device machine, which has no package index.
# Run from the repo root there:  bash bench/device_polars_gpu.sh [STAGE ...]   (default: install check bench)
#
# What it needs, in /tmp/site (the machine keeps /tmp for ~30 s between calls, so the pieces may come
# in separate calls; each call's carried paths replace the last call's, /tmp/site stays):
#   .gpu/cudf.tar.xz, .gpu/py.tar.xz   cuDF 26.10.2 (pylibcudf, rmm, libkvikio), marimo, altair
#                                      (../shared/gpu/make-bundles.sh), unpacked by stage `base`
#   .gpu/pl/*.whl                      polars 1.44.2, polars-runtime-32 1.44.2, cudf-polars-cu13 26.10.2
#   .gpu/plgpu/plgpu.tar.xz            kvikio + the streaming executor's rapidsmpf/cudf-streaming/ucxx/UCX
#   .gpu/plgpu/cuda_core.tar.xz        cuda-core 1.2.2 and nvidia-ml-py (pynvml), each unpacked only if
#   .gpu/plgpu/pynvml.tar.xz           the image lacks it (all three from bench/make_plgpu_bundle.sh)
# Stages:
#   base     source bench/device_setup.sh: unpack every .gpu/*.tar.xz carried in this call into /tmp/site
#   install  pip-install .gpu/pl/*.whl and unpack .gpu/plgpu/*.tar.xz into /tmp/site (whichever this call carried)
#   check    import cudf_polars; one GPU collect with the default (streaming) executor and one in-memory
#   bench    python3 bench/rapids_benchmark.py --rows 10000000 100000000 --repeats 3 --engines all
# Two calls, in one warm window:
#   1. carry .gpu/cudf.tar.xz .gpu/py.tar.xz        bash bench/device_polars_gpu.sh base
#   2. carry .gpu/pl .gpu/plgpu                      bash bench/device_polars_gpu.sh install check bench
# CUDF_POLARS__EXECUTOR=in-memory in the environment makes `pl.GPUEngine()` (no executor named) use the
# in-memory executor instead of the streaming one, cudf-polars 26.10's default.
# POLARS_GPU_ENABLE_CUDA_MANAGED_MEMORY=0 (set below): the in-memory executor would otherwise take a pool
# of *managed* memory of 80% of the free GPU memory, which may grow past it; the device's rules ask for
# plain allocations. The streaming executor uses a cudaMallocAsync pool either way.
# Logs go to $OUT (default /tmp/out).
set -uo pipefail
# Every part runs even when one fails (its output still matters); the script's exit status says whether any did.
status=0
SITE=${SITE:-/tmp/site}
OUT=${OUT:-/tmp/out}
mkdir -p "$SITE" "$OUT"
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 POLARS_GPU_ENABLE_CUDA_MANAGED_MEMORY=0
[ $# -eq 0 ] && set -- install check bench

for stage in "$@"; do
  case "$stage" in
  base)
    # shellcheck source=/dev/null
    source bench/device_setup.sh
    ;;
  install)
    whls=(.gpu/pl/*.whl)
    if [ -e "${whls[0]}" ]; then
      echo "# pip-installing ${#whls[@]} wheels from .gpu/pl into $SITE"
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${whls[@]}" || { echo "# pip install from .gpu/pl FAILED"; status=1; }
    fi
    if [ -f .gpu/plgpu/plgpu.tar.xz ]; then
      echo "# unpacking .gpu/plgpu/plgpu.tar.xz into $SITE"
      tar -C "$SITE" -xJf .gpu/plgpu/plgpu.tar.xz
    fi
    # Fallbacks for what the image should already have: unpacked only where the import fails.
    for pair in "cuda_core:from cuda.core import Device" "pynvml:import pynvml"; do
      tarball=".gpu/plgpu/${pair%%:*}.tar.xz" probe="${pair#*:}"
      [ -f "$tarball" ] || continue
      if python3 -c "$probe" 2>/dev/null; then
        echo "# '$probe' works here: $tarball not needed"
      else
        echo "# '$probe' fails here: unpacking $tarball into $SITE"
        tar -C "$SITE" -xJf "$tarball"
      fi
    done
    ;;
  check)
    python3 - <<'EOF' 2>&1 | tee "$OUT/polars_gpu_check.log" || status=1
import importlib.metadata as md
for d in ("polars", "cudf-polars-cu13", "pylibcudf-cu13", "rmm-cu13", "kvikio-cu13", "rapidsmpf-cu13",
          "cudf-streaming-cu13", "ucxx-cu13", "cuda-core", "cuda-bindings", "cuda-pathfinder", "nvidia-ml-py",
          "cupy-cuda13x", "numpy", "pandas", "pyarrow"):
    try:
        print(f"# {d} {md.version(d)}")
    except md.PackageNotFoundError:
        print(f"# {d} MISSING")
EOF
    python3 -c 'import polars as pl, cudf_polars; print(pl.LazyFrame({"a":[1,2,3]}).select(pl.col("a").sum()).collect(engine=pl.GPUEngine(raise_on_fail=True)))' \
      2>&1 | tee -a "$OUT/polars_gpu_check.log" || status=1
    # The streaming executor's engine pins the process to the GPU's "local" CPU cores and NUMA memory
    # (cudf_polars.engine.hardware_binding): see whether the CPU engines benchmarked in the same process lose cores.
    python3 -c 'import os, polars as pl; n = len(os.sched_getaffinity(0)); pl.LazyFrame({"a":[1]}).collect(engine=pl.GPUEngine(raise_on_fail=True)); print("CPU affinity before/after a streaming GPU collect:", n, len(os.sched_getaffinity(0)), "| polars threads", pl.thread_pool_size())' \
      2>&1 | tee -a "$OUT/polars_gpu_check.log" || status=1
    python3 -c 'import polars as pl; print("in-memory:", pl.LazyFrame({"a":[1,2,3]}).select(pl.col("a").sum()).collect(engine=pl.GPUEngine(raise_on_fail=True, executor="in-memory")).item())' \
      2>&1 | tee -a "$OUT/polars_gpu_check.log" || status=1
    ;;
  bench)
    python3 bench/rapids_benchmark.py --rows 10000000 100000000 --repeats 3 --engines all 2>&1 \
      | tee "$OUT/polars_gpu_bench.log" || status=1
    ;;
  *)
    echo "unknown stage '$stage' (base, install, check, bench)" >&2
    exit 2
    ;;
  esac
done
exit "$status"
