#!/usr/bin/env bash
# Every GPU test of both apps in one device call (target: at most 8 minutes on an H100/H200).
# Carry .gpu/cudf.tar.xz and .gpu/py.tar.xz. A hang leaves a stack: pytest's faulthandler dumps every thread
# after 240 s in one test, and the whole run is stopped by `timeout` before the call's limit.
# GPU_TESTS_TIMEOUT=N shortens that limit when less device time is left; GPU_TESTS="file ..." runs those files
# (in that order) instead of all of tests/gpu.
set -uo pipefail
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
date -u
timeout -k 20 -s INT "${GPU_TESTS_TIMEOUT:-470}" python3 -m pytest -q -s -p no:cacheprovider -o faulthandler_timeout=240 --durations=15 \
  -m gpu ${GPU_TESTS:-tests/gpu} "$@" 2>&1 | tee "$OUT/gpu_tests.log"
status=$?
echo "device_gpu_tests.sh exit status $status"
exit $status
