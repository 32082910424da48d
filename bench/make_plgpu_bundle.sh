#!/usr/bin/env bash
# Build what Polars' GPU engine (cudf-polars-cu13 26.10.2) needs on the device machine beyond
# .gpu/cudf.tar.xz (cuDF, pylibcudf, rmm, libkvikio, nvcomp) and .gpu/pl/ (polars, polars-runtime-32,
# cudf-polars wheels). Run here, from the repo root (needs the package index; ~1 minute):
#
#   bash bench/make_plgpu_bundle.sh            # writes .gpu/plgpu/plgpu.tar.xz and .gpu/plgpu/cuda_core.tar.xz
#
# plgpu.tar.xz (~10 MiB): kvikio (imported by `import cudf_polars`) and the default *streaming*
#   executor's stack: rapidsmpf, librapidsmpf, cudf-streaming, libcudf-streaming, ucxx, libucxx and
#   libucx (its libraries are linked by librapidsmpf even on one GPU). Headers, static libraries,
#   CMake files, perftest, benchmarks, examples, .pyi/.pxd dropped (no strip: see below); the small
#   fatbin of libcudf_streaming cut to sm_90 (H100/H200).
# cuda_core.tar.xz (~2 MiB): cuda-core 1.2.2 (cu13 half only), which the streaming executor imports.
#   The device image should already have it (numba-cuda 0.30 requires cuda-core); bench/device_polars_gpu.sh
#   unpacks it only where `from cuda.core import Device` fails there.
# pynvml.tar.xz (~50 KiB): nvidia-ml-py (cudf-polars imports pynvml), likewise unpacked only where
#   `import pynvml` fails (the app's NVML readings show the image has it).
# Both go under .gpu/plgpu/, not .gpu/, so bench/device_setup.sh (which unpacks every .gpu/*.tar.xz) ignores them.
set -euo pipefail
OUT="${1:-.gpu/plgpu}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PRUNE=""
for p in ../shared/gpu/prune_fatbin.py /work/shared/gpu/prune_fatbin.py; do [ -f "$p" ] && PRUNE="$(realpath "$p")" && break; done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p "$WORK/w" "$WORK/s" "$WORK/cc"
python3 -m pip download -q --no-deps "${PLAT[@]}" -d "$WORK/w" \
  kvikio-cu13==26.10.0 rapidsmpf-cu13==26.10.0 librapidsmpf-cu13==26.10.0 \
  cudf-streaming-cu13==26.10.2 libcudf-streaming-cu13==26.10.2 \
  ucxx-cu13==0.52.0 libucxx-cu13==0.52.0 libucx-cu13==1.21.0 cuda-core==1.2.2 nvidia-ml-py==13.615.71
mkdir -p "$WORK/ml"
for w in "$WORK"/w/*.whl; do
  case "$(basename "$w")" in
    cuda_core-*) unzip -q -o "$w" -d "$WORK/cc" ;;
    nvidia_ml_py-*) unzip -q -o "$w" -d "$WORK/ml" ;;
    *) unzip -q -o "$w" -d "$WORK/s" ;;
  esac
done

cd "$WORK/s"
# cudf-streaming's wheel also drops copies of its extension modules at the top level; nothing imports them.
rm -f ./*.abi3.so
rm -rf libucxx/include libucxx/lib64/cmake libucxx/lib64/rapids ucxx/include ucxx/benchmarks ucxx/examples \
  libucx/include libucx/bin libucx/share libucx/lib/cmake libucx/lib/pkgconfig \
  librapidsmpf/include librapidsmpf/lib64/cmake librapidsmpf/lib64/rapids librapidsmpf/bin \
  libcudf_streaming/include libcudf_streaming/lib64/cmake libcudf_streaming/lib64/rapids \
  kvikio/benchmarks cudf_streaming/examples rapidsmpf/examples rapidsmpf/benchmarks
rm -f libucx/lib/*.a libucx/lib/*.la libucx/lib/ucx/*.a libucx/lib/ucx/*.la libucx/lib/ucx/libucx_perftest*
rm -f libucx_cu13.libs/libgomp-*   # only the dropped perftest needed it
find . \( -name tests -o -name __pycache__ \) -type d -prune -exec rm -rf {} +
find . \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.h' -o -name '*.hpp' -o -name '*.cuh' \) -delete
# The wheel stores libX.so, libX.so.0 and libX.so.0.0.0 as three copies: keep libX.so.0, link the others.
for f in libucx/lib/*.so.0 libucx/lib/ucx/*.so.0; do
  b="${f%.0}"
  rm -f "$b" "$f.0.0" && ln -s "$(basename "$f")" "$b" && ln -s "$(basename "$f")" "$f.0.0"
done
if [ -n "$PRUNE" ]; then python3 "$PRUNE" 90 libcudf_streaming/lib64/libcudf_streaming.so; fi
# No strip here: binutils strip breaks the UCX libraries that auditwheel patched ("ELF load command address/offset
# not page-aligned" at dlopen), and the RAPIDS libraries carry no debug info.
tar -cf - . | xz -T0 --x86 --lzma2=preset=9e > "$OUT/plgpu.tar.xz"

cd "$WORK/cc"
rm -rf cuda/core/cu12
find . \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' \) -delete
tar -cf - . | xz -T0 --x86 --lzma2=preset=9e > "$OUT/cuda_core.tar.xz"
cd "$WORK/ml" && tar -cf - . | xz -T0 -9 > "$OUT/pynvml.tar.xz"
ls -la "$OUT"
