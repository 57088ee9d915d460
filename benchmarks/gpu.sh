#!/usr/bin/env bash
# Seconds per frame and peak memory of every scene preset with random-weight REAL-SIZE models, in < 10 min
# on one CUDA GPU. Run from the repository root:  bash benchmarks/gpu.sh
#
#   1. writes real-size random-weight model folders (SD-2 inpainting, SD-2.1-base, DPT-Large, Depth Anything V2
#      Small; fp16 safetensors, ~6 GB) under benchmarks/out/models/real (kept for reruns);
#   2. runs each preset (configs/gpu-fast.yaml, gpu-quality.yaml, scenescape-faithful.yaml) through
#      ScenePipeline.from_config in a fresh process: 3 frames at 512x512 (frame 0 + 2 steady frames;
#      scenescape-faithful: 2 frames, its finetuning makes a frame ~10x dearer), reporting s/frame and
#      torch.cuda.max_memory_allocated / max_memory_reserved;
#   3. appends a section to benchmarks/RESULTS.md and writes benchmarks/out/gpu.json.
#
# Without CUDA (or with --tiny) it runs the same path with the tiny random models of scenescape.testing on
# the CPU at a small size: a smoke test of the script, not a measurement.  bash benchmarks/gpu.sh --tiny
# Environment: BUDGET_S (default 570: the whole script's limit), SIZE, FRAMES.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
PY="${PYTHON:-python}"
BUDGET_S="${BUDGET_S:-570}"
mkdir -p benchmarks/out
start=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - start) )); }

if [[ "${1:-}" != "--tiny" ]] && "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  # models first (one process), then the cheap presets, the faithful one last with what is left
  timeout "$(left)" "$PY" benchmarks/gpu_presets.py --device cuda --size "${SIZE:-512}" --frames "${FRAMES:-3}" \
    --presets gpu-fast,gpu-quality --timeout 200 --json benchmarks/out/gpu.json --write
  t=$(left)
  if (( t > 60 )); then
    timeout "$t" "$PY" benchmarks/gpu_presets.py --device cuda --size "${SIZE:-512}" --frames 2 \
      --presets scenescape-faithful --timeout $(( t - 20 )) --json benchmarks/out/gpu-faithful.json --write
  else
    echo "no time left for scenescape-faithful (${t} s)"
  fi
else
  echo "no CUDA device (or --tiny): CPU smoke test with tiny random models"
  timeout "$(left)" "$PY" benchmarks/gpu_presets.py --tiny --device cpu --size "${SIZE:-64}" --frames "${FRAMES:-2}" \
    --json benchmarks/out/gpu-tiny.json
fi
echo "gpu.sh done in $(( $(date +%s) - start )) s"
