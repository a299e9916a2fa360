#!/usr/bin/env bash
# Stage 1 at paper scale on one CUDA GPU, in under 10 minutes:
#   bash benchmarks/gpu_check.sh
# pick_cube on ManiSkill's physx_cuda with 256 envs, model=5m, CDRED, the default recipe, for
# GPU_CHECK_MINUTES (default 8) of training; then prints the run's evaluation lines, the update
# throughput, and `gpu_check minutes_to_0.9=<m|never> best_success=<x>` read from its eval.csv
# (physx_cuda refuses physical shifts, so there are no zero-shot target lines).
# On a machine without CUDA it says so and exits 0 (nothing to measure).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to measure"
    exit 0
fi
minutes=${GPU_CHECK_MINUTES:-8}
out=outputs/benchmarks/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)
"$PY" benchmarks/update_cost.py model=5m batch_size=256
"$PY" benchmarks/pretrain_curve.py task=pick_cube backend=maniskill model=5m objective=cdred device=cuda \
    num_envs=256 utd_ratio=0.0625 agent.batch_size=256 seed_steps=5120 num_demos=200 \
    budget_env_steps=100000000 budget_minutes="$minutes" eval_every=25600 eval_episodes=50 eval_video=false \
    target_domains=none out_dir="$out"
"$PY" - "$out/eval.csv" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
hit = next((float(r["wall_s"]) / 60 for r in rows if float(r["success_at_end"]) >= 0.9), None)
best = max(float(r["success_at_end"]) for r in rows)
print(f"gpu_check minutes_to_0.9={'never' if hit is None else f'{hit:.1f}'} best_success={best:.2f} evaluations={len(rows)}")
PYEOF
