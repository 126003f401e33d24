#!/usr/bin/env bash
# The one GPU check of p53radiomics.deep, in at most 9 minutes: every test of
# tests/deep/test_cuda.py, a profile of the training step, then bench_cnn.py (samples/s, backbone
# images/s, TFLOP/s and share of the measured bf16 matrix rate, peak memory; six backbones x
# {FF, MC} at 256x256, batch 32 then 64, skorch's TF32 baseline against ours; then strict fp32;
# then ours without the graph and with compile=True, as far as time allows).
#
# On the GPU machine, from the repository root (the device tool's `run`):
#     bash benchmarks/gpu_check.sh        # carry: ["benchmarks/wheels"]; results in $OUT
# writes to $OUT (at most 8 files): gpu_check.log (everything), env.txt, pytest_cuda.txt,
# profile.txt, bench_cnn.txt (the table), bench_cnn.json (every run). Copy the last four under
# benchmarks/results/ with the machine's name.
#
# The machine has no network. Its python3 (3.12, torch, torchvision, scikit-learn, numpy, scipy,
# pandas, matplotlib, pytest) lacks what the package also needs: SimpleITK, PyWavelets, skorch,
# pykwalify, docopt, ruamel.yaml, nibabel and pyradiomics-bhklab, carried as wheels in benchmarks/wheels/
# (git-ignored, about 61 MB: the repository and the wheels stay under the tool's 64 MiB). Rebuild
# them here, where PyPI is reachable, with Python 3.12 (docopt has no wheel on PyPI and
# pyradiomics-bhklab none for 3.12: both are built; pyradiomics' C extensions need only glibc
# 2.2.5):
#     bash benchmarks/gpu_check.sh --fetch-wheels     # PY312=/root/.pyenv/versions/3.12.1/bin/python
#
# Environment: OUT (default /tmp/gpu_check_out), PYTHON (python3), WHEELS (benchmarks/wheels;
# "none" installs nothing, e.g. for a dry run from the project's venv), BUDGET_S (540: the whole
# script's time), STEPS (default "tests profile bench": a subset reruns only those),
# BENCH_ARGS (more options for every bench_cnn.py call, e.g. "--smoke --threads 1" for a dry run
# on a CPU, where the CUDA tests skip). A dry run here:
#     OUT=/tmp/gc PYTHON=.venv/bin/python WHEELS=none BENCH_ARGS="--smoke --threads 1" \
#         bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-benchmarks/wheels}
BUDGET_S=${BUDGET_S:-540}
BENCH_ARGS=${BENCH_ARGS:-}
STEPS=${STEPS:-tests profile bench}
export PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    PY312=${PY312:-$(ls -d /root/.pyenv/versions/3.12*/bin/python 2>/dev/null | tail -1)}
    [[ -x "$PY312" ]] || { echo "set PY312 to a Python 3.12"; exit 1; }
    mkdir -p "$WHEELS"
    "$PY312" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" \
        SimpleITK==2.5.7 PyWavelets==1.9.0 skorch==1.4.0 pykwalify==1.8.0 ruamel.yaml==0.19.1 \
        nibabel==5.4.2 skops==0.16.0 safetensors==0.8.0 prettytable==3.18.0 wcwidth==0.9.4 &&
        "$PY312" -m pip wheel --no-deps -w "$WHEELS" docopt==0.6.2 pyradiomics-bhklab==3.1.4 ||
        exit 1
    ls -l "$WHEELS"
    du -ch "$WHEELS"/*.whl | tail -1
    exit 0
fi

OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
echo "gpu_check.sh: $(date -u +%FT%TZ), out=$OUT, budget ${BUDGET_S}s"
left() { echo $((BUDGET_S - SECONDS)); }
min() { echo $(($1 < $2 ? $1 : $2)); }

# 1. The packages the machine lacks, from the carried wheels.
if [[ "$WHEELS" != none ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || { echo "installing the wheels failed"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    "$PY" - <<'EOF'
import platform
import SimpleITK, radiomics, sklearn, skorch, torch, torchvision
print("python", platform.python_version(), "torch", torch.__version__, "torchvision",
      torchvision.__version__, "skorch", skorch.__version__, "scikit-learn", sklearn.__version__,
      "SimpleITK", SimpleITK.Version_VersionString(), "pyradiomics", radiomics.__version__)
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "-",
      "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
EOF
} 2>&1 | tee "$OUT/env.txt"

step() { [[ " $STEPS " == *" $1 "* ]]; }

# 2. Every CUDA test (each reported as it ends; the compiled-branches one last).
tests_rc=0
if step tests; then
    echo "== pytest tests/deep/test_cuda.py (elapsed ${SECONDS}s)"
    timeout 220 "$PY" -m pytest -v -rs -p no:cacheprovider --durations=10 tests/deep/test_cuda.py \
        2>&1 | tee "$OUT/pytest_cuda.txt"
    tests_rc=${PIPESTATUS[0]}
    echo "pytest exit status: $tests_rc (elapsed ${SECONDS}s)"
fi

bench() { # bench TIMEOUT_S ARGS...: one bench_cnn.py call, killed at its share of the budget
    local limit=$1
    shift
    ((limit > 20)) || { echo "skipped (budget spent): bench_cnn.py $*"; return 0; }
    timeout "$limit" "$PY" benchmarks/bench_cnn.py --out "$OUT" "$@" $BENCH_ARGS
    echo "bench_cnn.py exit status $? (elapsed ${SECONDS}s)"
}

# 3. Profile: ResNet101-FF, batch 32, ten steps of the graphed and of the eager step.
if step profile; then
    echo "== profile (elapsed ${SECONDS}s)"
    bench "$(min 90 $(($(left) - 240)))" --profile --backbones resnet101 --modes ff --batch-sizes 32
fi

# 4. Benchmark: the TF32 baseline and ours, batch 32 then 64; strict fp32; the other two paths.
#    --budget-s stops starting runs; timeout ends the call that overruns its share.
if step bench; then
    echo "== bench_cnn.py: tf32 and ours (elapsed ${SECONDS}s)"
    limit=$(($(left) - 100))
    bench $limit --paths tf32 ours --batch-sizes 32 64 --epochs 2 --budget-s $((limit - 30))
    echo "== bench_cnn.py: strict fp32 (elapsed ${SECONDS}s)"
    limit=$(($(left) - 45))
    bench $limit --paths fp32 --batch-sizes 32 --epochs 2 --budget-s $((limit - 30))
    echo "== bench_cnn.py: without the graph, with compile (elapsed ${SECONDS}s)"
    limit=$(($(left) - 10))
    bench $limit --paths ours-eager ours-compile --backbones resnet101 densenet121 --modes ff \
        --batch-sizes 32 --epochs 2 --budget-s $((limit - 40))
    "$PY" benchmarks/bench_cnn.py --summary "$OUT" || true
fi
echo "gpu_check.sh done in ${SECONDS}s; tests exit status $tests_rc"
exit "$tests_rc"
