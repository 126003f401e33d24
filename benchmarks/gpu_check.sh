#!/usr/bin/env bash
# GPU check of p53radiomics.deep: the CUDA tests, then bench_cnn.py (training images/s and peak
# memory, six backbones x {FF, MC} at 256x256, our CUDA path against plain fp32 skorch).
#
# On the GPU machine, from the repository root (about 7 minutes on an H100 or H200):
#     bash benchmarks/gpu_check.sh            # writes env.txt, pytest_cuda.txt, bench_cnn.* to $OUT
#
# The GPU machine may have no network. Its python3 has torch, torchvision, scikit-learn, numpy and
# pytest but maybe not skorch: fetch skorch's wheel beforehand, on a machine with network access,
#     bash benchmarks/gpu_check.sh --fetch-wheels    # -> .whl/ (git-ignored via .git/info/exclude)
# and send .whl/ along (the device tool's carry: [".whl"]). Wheels found in .whl/ are installed
# into /tmp/site; otherwise missing packages are asked of pip, which works only with network.
#
# Environment: OUT (default /tmp/gpu_check_out), PYTHON (python3), WHEELS (.whl), BENCH_ARGS (more
# options for bench_cnn.py, e.g. "--quick --threads 1" for a dry run on a CPU), P53_SHIM=1 (use the
# shim below even where the package imports).
#
# If `import p53radiomics` fails there (SimpleITK or PyRadiomics missing, needed by other parts of
# the package), the sub-package p53radiomics.deep, which needs none of them, is imported through a
# shim package in a temporary folder.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
export PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEELS"
    grep -qxF "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >>.git/info/exclude
    "$PY" -m pip download --no-deps --only-binary=:all: -d "$WHEELS" "skorch==1.4.0"
    ls -l "$WHEELS"
    exit 0
fi

OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
echo "gpu_check.sh: $(date -u +%FT%TZ), out=$OUT"

# 1. Packages: torch only when missing; the rest from carried wheels, else from pip.
if ! "$PY" -c 'import torch' 2>/dev/null; then
    "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1 || { echo "no torch"; exit 1; }
fi
missing=$("$PY" - <<'EOF'
import importlib.util
need = []
for name in ("torchvision", "skorch", "sklearn", "numpy", "pytest", "joblib", "tabulate", "tqdm"):
    if importlib.util.find_spec(name) is None:
        need.append({"sklearn": "scikit-learn"}.get(name, name))
try:
    from sklearn.utils.validation import validate_data  # noqa: F401 - scikit-learn >= 1.6
except ImportError:
    need.append("scikit-learn>=1.6")
print(" ".join(dict.fromkeys(need)))
EOF
)
if [[ -n "$missing" ]]; then
    echo "missing: $missing"
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$WHEELS"/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    else
        "$PY" -m pip install -q $missing || echo "pip could not install: $missing"
    fi
fi

# 2. The package, or the shim for its deep-learning part alone.
RUN_DIR=$REPO
PYTEST_ARGS=(-p no:cacheprovider)
if [[ -n "${P53_SHIM:-}" ]] || ! "$PY" -c 'import p53radiomics.deep' 2>/dev/null; then
    SHIM=$(mktemp -d)
    mkdir "$SHIM/p53radiomics"
    : >"$SHIM/p53radiomics/__init__.py"
    ln -s "$REPO/p53radiomics/deep" "$SHIM/p53radiomics/deep"
    export PYTHONPATH=$SHIM${PYTHONPATH:+:$PYTHONPATH}
    RUN_DIR=$SHIM
    PYTEST_ARGS+=(--noconftest -c /dev/null --rootdir "$SHIM")
    echo "p53radiomics not importable as a whole: using the shim $SHIM for p53radiomics.deep"
fi

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    "$PY" - <<'EOF'
import sklearn, skorch, torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__, "skorch",
      skorch.__version__, "scikit-learn", sklearn.__version__)
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "-",
      "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
EOF
} | tee "$OUT/env.txt"

# 3. Tests: the CUDA ones, and the CPU ones, which must also pass where CUDA is present.
echo "== pytest tests/test_deep_*.py"
(cd "$RUN_DIR" && timeout 240 "$PY" -m pytest -q -rs "${PYTEST_ARGS[@]}" --durations=8 \
    "$REPO"/tests/test_deep_cuda.py "$REPO"/tests/test_deep_featurizer.py \
    "$REPO"/tests/test_deep_backbones.py) 2>&1 | tee "$OUT/pytest_cuda.txt"
tests_rc=${PIPESTATUS[0]}
echo "pytest exit status: $tests_rc"

# 4. Benchmark: the whole grid within a budget, ResNet101-FF first; then batch 64 if time is left.
echo "== bench_cnn.py (elapsed ${SECONDS}s)"
budget=$((400 - SECONDS))
((budget < 60)) && budget=60
(cd "$RUN_DIR" && timeout $((budget + 120)) "$PY" "$REPO/benchmarks/bench_cnn.py" \
    --budget-s "$budget" --out "$OUT" ${BENCH_ARGS:-})
if ((SECONDS < 400)) && [[ -z "${BENCH_ARGS:-}" ]]; then
    echo "== bench_cnn.py, ResNet101 at batch 64 (elapsed ${SECONDS}s)"
    (cd "$RUN_DIR" && timeout 60 "$PY" "$REPO/benchmarks/bench_cnn.py" --backbones resnet101 \
        --batch-size 64 --out "$OUT/batch64")
fi
echo "gpu_check.sh done in ${SECONDS}s; tests exit status $tests_rc"
exit "$tests_rc"
