#!/usr/bin/env bash
# The RAPIDS dashboard's GPU runs, as made for notes/BENCHMARKS.md. Run from the repo root on the device.
set -uo pipefail
# Every part runs even when one fails (its output still matters); the script's exit status says whether any did.
status=0
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
stage=${1:-all}   # a, b, all, full, files, cudf_pandas, telemetry
if [ "$stage" = all ] || [ "$stage" = a ]; then
  date -u
  python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_rapids_gpu.py 2>&1 | tee "$OUT/rapids_gpu_tests.log" || status=1
  python3 bench/rapids_standalone.py --rows 10000000 --app 2>&1 | tee "$OUT/rapids_standalone.log" || status=1
  /usr/bin/time -v python3 bench/rapids_benchmark.py --rows 10000000 100000000 --repeats 3 2>&1 \
    | grep -v -E "^\s+(Average|Exit|Socket|Signals|Swaps|File|Page size|Voluntary|Involuntary|Minor|Major|Percent|System|User)" \
    | tee "$OUT/rapids_bench.log" || status=1
fi
if [ "$stage" = all ] || [ "$stage" = b ]; then
  python3 -m pytest -q -p no:cacheprovider tests/gpu/test_rapids_gpu.py 2>&1 | tail -3 | tee "$OUT/rapids_gpu_tests_b.log" || status=1
  /usr/bin/time -f "export wall %e s, max RSS %M KB" python3 -m marimo export html rapids_benchmark_dashboard.py \
    -o "$OUT/rapids_100m.html" -- --run --rows 100000000 --repeats 3 2>&1 | tail -3 | tee "$OUT/rapids_export.log" || status=1
  python3 bench/rapids_benchmark.py --rows 500000000 --repeats 1 2>&1 | tee "$OUT/rapids_500m.log" || status=1
fi
if [ "$stage" = full ]; then   # after device_llm.sh installed Polars into /tmp/site on the same warm machine
  python3 -m pytest -q -p no:cacheprovider tests/gpu/test_rapids_gpu.py 2>&1 | tail -3 | tee "$OUT/rapids_gpu_tests.log" || status=1
  python3 bench/rapids_standalone.py --rows 10000000 --app 2>&1 | tee "$OUT/rapids_standalone.log" || status=1
  python3 bench/rapids_benchmark.py --rows 10000000 100000000 --repeats 3 --engines all 2>&1 | tee "$OUT/rapids_bench.log" || status=1
  /usr/bin/time -f "export wall %e s, max RSS %M KB" python3 -m marimo export html rapids_benchmark_dashboard.py \
    -o "$OUT/rapids_100m.html" -- --run --rows 100000000 --repeats 3 2>&1 | tail -2 | tee "$OUT/rapids_export.log" || status=1
fi
if [ "$stage" = files ]; then   # issue 19: reads, the pipeline, DuckDB and the copy probe (DuckDB/Polars wheels on PYTHONPATH)
  date -u
  python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_rapids_files_gpu.py 2>&1 | tail -30 | tee "$OUT/rapids_files_gpu_tests.log" || status=1
  /usr/bin/time -f "bench wall %e s, max RSS %M KB" python3 bench/rapids_benchmark.py --rows 10000000 100000000 --repeats 3 \
    --ops all 2>&1 | tee "$OUT/rapids_files_bench.log" || status=1
  /usr/bin/time -f "export wall %e s, max RSS %M KB" python3 -m marimo export html rapids_benchmark_dashboard.py \
    -o "$OUT/rapids_100m_files.html" -- --run --rows 100000000 --repeats 3 2>&1 | tail -2 | tee "$OUT/rapids_export_files.log" || status=1
fi
if [ "$stage" = cudf_pandas ]; then   # issue 23: cudf.pandas engine, fallbacks, snippet, the app's export with it on
  # Each part under `timeout -s ABRT`: with PYTHONFAULTHANDLER set, a hang dumps every thread's stack to the log.
  export PYTHONFAULTHANDLER=1
  date -u
  if [ -z "${SKIP_TESTS:-}" ]; then   # SKIP_TESTS=1 when bench/device_gpu_tests.sh already ran them this session
    timeout -s ABRT 200 python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_rapids_cudf_pandas_gpu.py 2>&1 \
      | tail -40 | tee "$OUT/cudf_pandas_gpu_tests.log" || status=1
  fi
  timeout -s ABRT 280 /usr/bin/time -f "export wall %e s, max RSS %M KB" python3 -m marimo export html rapids_benchmark_dashboard.py \
    -o "$OUT/rapids_10m_cudf_pandas.html" -- --run --rows 10000000 --repeats 3 2>&1 | tail -40 | tee "$OUT/rapids_export_cudf_pandas.log" || status=1
  timeout -s ABRT 90 python3 bench/cudf_pandas_fallbacks.py --rows 2000 2>&1 | tee "$OUT/cudf_pandas_fallbacks.log" || status=1
fi
if [ "$stage" = telemetry ]; then   # issue 14: GPM, energy, achievable bandwidth, roofline, the utilization probe
  date -u
  python3 -m pytest -q -s -p no:cacheprovider tests/gpu/test_rapids_telemetry_gpu.py 2>&1 | tail -60 | tee "$OUT/rapids_telemetry_gpu_tests.log" || status=1
  python3 bench/rapids_sampler_overhead.py --rows 10000000 --rounds 6 --repeats 10 2>&1 | tee "$OUT/rapids_sampler_overhead.log" || status=1
  /usr/bin/time -f "export wall %e s, max RSS %M KB" python3 -m marimo export html rapids_benchmark_dashboard.py \
    -o "$OUT/rapids_10m_telemetry.html" -- --run --rows 10000000 --repeats 5 --probe 2>&1 | tail -2 | tee "$OUT/rapids_export_telemetry.log" || status=1
fi
exit "$status"
