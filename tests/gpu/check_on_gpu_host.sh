#!/usr/bin/env bash
# NVIDIA detection and GPU pinning, checked for real on a GPU host: the GPU tests, then
# `dtf up` with a CUDA task and a CUDA-marked pytest test. Writes its evidence under $OUT
# (default ./gpu-check). Needs the project installed (`pip install -e '.[test,gpu]'`).
set -u
OUT=${OUT:-$PWD/gpu-check}
mkdir -p "$OUT"
export DTF_DETECT_BROWSER=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,compute_cap,uuid,driver_version --format=csv,noheader,nounits \
  | tee "$OUT/nvidia-smi.csv"
python3 -c "import msgspec; from agents.worker.capabilities import detect; \
print(msgspec.json.encode(detect()).decode())" | tee "$OUT/capabilities.json"
timeout 300 python3 -m pytest -p no:cacheprovider -q -rs tests/gpu tests/unit/hardware \
  2>&1 | tee "$OUT/pytest-gpu.txt"

proj=$(mktemp -d) && cd "$proj" || exit 1
mkdir tests && cat > tests/test_cuda.py <<'PY'
import pytest

@pytest.mark.dtf(hardware=["cuda"], gpus=1)
def test_cuda_is_there():
    import ctypes
    cuda = ctypes.CDLL("libcuda.so.1")
    n = ctypes.c_int()
    assert cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(n)) == 0
    assert n.value >= 1
PY
dtf up --workers 1 --slots 2 >"$OUT/up.log" 2>&1 &
up=$!
for _ in $(seq 120); do grep -q "DTF ready" "$OUT/up.log" && break; sleep 0.5; done
dtf workers --json >"$OUT/workers.json"
id=$(dtf submit --requires cuda --gpus 1 -- python3 -c \
  "import os, torch; print('CUDA_VISIBLE_DEVICES', os.environ['CUDA_VISIBLE_DEVICES'], \
'count', torch.cuda.device_count(), torch.cuda.get_device_name(0))")
dtf wait --timeout 120 "$id"; echo "wait exit $?"
dtf logs "$id"
dtf explain "$id"
dtf run pytest tests/ -v 2>&1 | tail -15
kill -INT $up; wait $up
echo "done"
