# Source this on the device machine: unpacks the carried cuDF and marimo bundles (see ../shared/gpu/README.md).
mkdir -p /tmp/site
for b in .gpu/*.tar.xz; do [ -f "$b" ] && tar -C /tmp/site -xJf "$b"; done
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
