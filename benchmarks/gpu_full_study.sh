#!/usr/bin/env bash
# The study at its own settings on one GPU node, in at most 9 minutes: `p53radiomics demo
# --profile full --n-patients N` (N = 96 unless given), stopped at its own time limit, with the
# stage table (wall time, CPU time and peak memory of every stage, seconds per patient to
# extrapolate to 320) and the report brought back.
#
# On the GPU machine, from the repository root (the device tool's `run`):
#     bash benchmarks/gpu_full_study.sh [N]      # carry: ["benchmarks/wheels"]; results in $OUT
# writes to $OUT (7 files): gpu_full_study.log (everything the run printed), env.txt (machine,
# versions), gpu_usage.csv (nvidia-smi every 5 s), stages.csv (the stage table), settings.json,
# report.html and table5.csv. A run stopped at the time limit leaves stages.csv with the stages it
# finished (run_study writes it as each stage ends) and no report: rerun with a smaller N. Copy
# stages.csv, settings.json and report.html under benchmarks/results/ with the machine's name.
#
# The machine has no network; its python3 (3.12, torch, scikit-learn, statsmodels, scipy, pandas,
# psutil) lacks SimpleITK, PyWavelets, skorch, pykwalify, docopt, ruamel.yaml, nibabel and
# pyradiomics-bhklab: the wheels of benchmarks/wheels/ (git-ignored; how to build them: the header
# of benchmarks/gpu_check.sh, `bash benchmarks/gpu_check.sh --fetch-wheels`).
#
# Environment: OUT (default /tmp/gpu_full_study_out), PYTHON (python3), WHEELS (benchmarks/wheels;
# "none" installs nothing, e.g. for a dry run from the project's venv), BUDGET_S (540: the whole
# script's time; the demo gets what is left of it less 25 s), PROFILE (full), VOXEL_SCALE (1),
# N_JOBS (-1: every core), RUN_DIR (/tmp/gpu_full_study_run: the demo's --out, with the cohort
# and the cache; emptied first). A dry run here, on the CPU:
#     OUT=/tmp/gfs PYTHON=.venv/bin/python WHEELS=none PROFILE=smoke VOXEL_SCALE=3 \
#         bash benchmarks/gpu_full_study.sh 24
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
N=${1:-96}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-benchmarks/wheels}
BUDGET_S=${BUDGET_S:-540}
PROFILE=${PROFILE:-full}
VOXEL_SCALE=${VOXEL_SCALE:-1}
N_JOBS=${N_JOBS:--1}
OUT=${OUT:-/tmp/gpu_full_study_out}
RUN_DIR=${RUN_DIR:-/tmp/gpu_full_study_run}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
rm -rf "$RUN_DIR"
exec > >(tee -a "$OUT/gpu_full_study.log") 2>&1
echo "gpu_full_study.sh: $(date -u +%FT%TZ), N=$N, profile $PROFILE, out=$OUT, budget ${BUDGET_S}s"

# 1. The packages the machine lacks, from the carried wheels.
if [[ "$WHEELS" != none ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || { echo "installing the wheels failed"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

# 2. The machine and the versions.
{
    echo "cores: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    "$PY" - <<'EOF'
import platform
import SimpleITK, radiomics, sklearn, skorch, torch
print("python", platform.python_version(), "torch", torch.__version__, "skorch",
      skorch.__version__, "scikit-learn", sklearn.__version__, "SimpleITK",
      SimpleITK.Version_VersionString(), "pyradiomics", radiomics.__version__)
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "-")
try:
    import psutil
    print("psutil", psutil.__version__, "(worker CPU time and memory are measured)")
except ImportError:
    print("no psutil: the stage table's CPU time leaves out the live worker processes")
EOF
} 2>&1 | tee "$OUT/env.txt"

# 3. GPU use every 5 s, in the background, for as long as the demo runs.
smi=""
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 \
        >"$OUT/gpu_usage.csv" 2>&1 &
    smi=$!
fi

# 4. The demo, interrupted (SIGINT, then SIGKILL 15 s later) where it would overrun the budget.
limit=$((BUDGET_S - SECONDS - 25))
echo "== p53radiomics demo --profile $PROFILE --n-patients $N (limit ${limit}s, elapsed ${SECONDS}s)"
timeout --signal=INT --kill-after=15 "$limit" "$PY" -m p53radiomics.cli demo --out "$RUN_DIR" \
    --profile "$PROFILE" --n-patients "$N" --voxel-scale "$VOXEL_SCALE" --n-jobs "$N_JOBS"
rc=$?
[[ -n "$smi" ]] && kill "$smi" 2>/dev/null
((rc == 124 || rc == 130 || rc == 137)) && echo "the demo was stopped at its time limit (${limit}s)"
echo "demo exit status $rc (elapsed ${SECONDS}s)"

# 5. What it wrote: the stage table (also that of a stopped run), settings, report, Table 5.
for name in stages.csv settings.json report.html table5.csv; do
    [[ -f "$RUN_DIR/$name" ]] && cp "$RUN_DIR/$name" "$OUT/" || echo "no $name"
done
[[ -f "$OUT/stages.csv" ]] && "$PY" - "$OUT/stages.csv" "$N" <<'EOF'
import sys
import pandas as pd
stages = pd.read_csv(sys.argv[1], index_col="stage")
n = int(sys.argv[2])
if "wall_s_per_patient" not in stages:  # a stopped run: the stages it finished
    for column in ("wall_s", "cpu_s"):
        stages[f"{column}_per_patient"] = stages[column] / n
per_patient = stages.drop(index="total", errors="ignore")
print(f"\nStages of {n} patients, extrapolated to 320 (wall s; linear in the patients):")
print(pd.DataFrame({"wall_s": per_patient["wall_s"],
                    "wall_s_320": per_patient["wall_s_per_patient"] * 320,
                    "peak_rss_all_mib": per_patient["peak_rss_all_mib"]}).round(1).to_string())
print(f"sum: {per_patient['wall_s'].sum():.0f} s measured, "
      f"{per_patient['wall_s_per_patient'].sum() * 320:.0f} s at 320 patients")
EOF
echo "gpu_full_study.sh done in ${SECONDS}s"
exit "$rc"
