#!/usr/bin/env bash
# The leaderboard's protocol (benchmarks/leaderboard.py) on one GPU: CIFAR-10 `resnet18`, then `vgg11_bn` if the
# budget allows; no augmentation, a 25k-sample pool (10k D_train, 2.5k D_ref, 7.5k D_shadow, 5k D_audit), 15 epochs,
# batch 256, bf16. Every method tuned with TRIALS Optuna trials on a calibration request, 2 independent retrains
# per request (the noise floor), 8 cached reference models for LiRA/RMIA, U-LiRA for ReMI + the best 3 baselines.
#
#   benchmarks/gpu_leaderboard.sh [key=value ...]            # overrides go to every setting's run config
#   benchmarks/gpu_leaderboard.sh --max-cost 0.05            # every method, tuning trials included, stopped at 5%
#                                                            # of a retrain's work (leaderboard.py --max-cost)
#   TINY=1 OUT=/tmp/x benchmarks/gpu_leaderboard.sh          # CPU smoke test (the cnn, a tiny pool, 1 seed)
#
# Environment: OUT (default runs/gpu_leaderboard-out) receives leaderboard.json, leaderboard_cells.json,
# leaderboard_meta.json, leaderboard.md, leaderboard.png, log.txt and presets/<setting>-random10.yaml: at most
# 8 files, one folder down, as a device machine returns them. SETTINGS (default cifar10_resnet18,cifar10_vgg11_bn),
# SCENARIOS (default random10), SEEDS (2), TRIALS (4), REFERENCES (8), BUDGET_S (420: no new tuning or cell
# starts after it; a cell is at most ~90 s, so the run ends inside the device's 600 s), PYTHON (python3).
# Resumable: cached models and a copy of the rows live in CACHE (default .bench-data/gpu-leaderboard), which a
# warm device machine keeps between calls; the same command again continues where the budget stopped it, and
# $OUT gets the whole table each time. On a fresh machine, put the previous $OUT files into CACHE/results
# (and carry it) to resume the rows; the models are then trained again.
#
# What travels (the device gets the checkout and the paths named in `carry`, 64 MiB in all, not ../shared):
#     mkdir -p .bench-data/cifar10-pack && cp ../shared/datasets/cifar10/* .bench-data/cifar10-pack/    # 56 MB
#     mkdir -p .bench-data/whl && python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --platform manylinux2014_x86_64 -d .bench-data/whl optuna==5.0.0 colorlog==6.12.0         # 0.45 MB
#     device run: command "benchmarks/gpu_leaderboard.sh", carry [".bench-data/cifar10-pack", ".bench-data/whl"],
#                 timeout_s 600
# The device image has no Optuna; the two wheels are installed into /tmp/site (Optuna's journal storage, used
# here, needs neither SQLAlchemy nor Alembic).
#
# Expected time on one H100 (an estimate, not measured: no GPU here). At ~12k training img/s for resnet18 (the
# assumption of gpu_cifar10.sh) a 15-epoch training over 10k samples is ~13 s:
#   start-up, unpack the JPEG pack                                                          ~25 s
#   per setting: 2 shadows + 8 reference models on 7.5k samples (15 epochs each)           ~90 s
#   random10: calibration retrain ~13 s; 11 methods x 4 trials (~2 s unlearning + ~1 s
#       evaluation each, Fisher's per-sample Jacobians and SSD ~10 s)                       ~150 s
#   per seed: target + 2 retrains ~40 s, 12 methods + audits ~40 s                         ~80 s x 2
#   U-LiRA (seed 0): 4 methods x 8 reference models x ~2 s                                 ~65 s
#   resnet18 total                                                                          ~7.5 minutes
# So within BUDGET_S the run finishes resnet18's setting and vgg11_bn starts only if resnet18 was faster than
# planned; at half the assumed throughput it stops after resnet18's first seed and a second call resumes.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(realpath -m "${OUT:-$repo/runs/gpu_leaderboard-out}")"
CACHE="$(realpath -m "${CACHE:-$repo/.bench-data/gpu-leaderboard}")"
mkdir -p "$OUT" "$CACHE/results"
cd "$repo"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
py="${PYTHON:-python3}"
if ! "$py" -c "import optuna" 2>/dev/null; then
    ls .bench-data/whl/optuna-*.whl >/dev/null 2>&1 || { echo "error: Optuna is missing and no wheel in .bench-data/whl (see this script's header)" >&2; exit 2; }
    "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .bench-data/whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
pack="${CIFAR10_PACK:-}"
for candidate in .bench-data/cifar10-pack shared/datasets/cifar10 ../shared/datasets/cifar10; do
    [ -z "$pack" ] && [ -f "$candidate/unpack.py" ] && pack="$candidate"
done
[ -n "$pack" ] && export CIFAR10_PACK="$(realpath "$pack")"
if [ -n "${TINY:-}" ]; then
    args=(--quick --settings cifar10_cnn --scenarios random10 --seeds 1 --trials 1 --references 2
          --methods "${METHODS:-remi,finetune}")
else
    args=(--settings "${SETTINGS:-cifar10_resnet18,cifar10_vgg11_bn}" --scenarios "${SCENARIOS:-random10}"
          --seeds "${SEEDS:-2}" --trials "${TRIALS:-4}" --references "${REFERENCES:-8}" --budget-s "${BUDGET_S:-420}")
    [ -n "${METHODS:-}" ] && args+=(--methods "$METHODS")
fi
# Rows are written straight into $OUT (atomically, one by one), so a run stopped at the device's limit still
# returns what it finished; CACHE/results keeps a copy for the next call on a warm machine.
cp -r "$CACHE/results/." "$OUT/" 2>/dev/null || true
trap 'cp -r "$OUT/." "$CACHE/results/" 2>/dev/null || true' EXIT
"$py" benchmarks/leaderboard.py "${args[@]}" --out "$OUT" --presets "$OUT/presets" --cache "$CACHE" "$@" 2>&1 \
    | tee "$OUT/log.txt"
