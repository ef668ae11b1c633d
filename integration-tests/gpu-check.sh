#!/usr/bin/env bash
# Every GPU check in one go, for a machine with an NVIDIA GPU (about 5-10
# minutes with a cold build): the GPU unit tests, the multi-process GPU
# tests, the gpu_actors example and bench_gpu. Run from the repository root:
#   bash integration-tests/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv || echo "nvidia-smi: none"
status=0
step() { echo; echo "=== $*"; }

step "build (release, feature cuda)"
cargo build --release -p parallel-examples --features cuda --bin gpu_actors --bin bench_gpu || exit 1

step "GPU unit tests"
cargo test --release -p parallel --features cuda --lib -- --ignored gpu:: || status=1

step "GPU multi-process tests"
cargo test --release -p parallel-integration-tests --features cuda --test gpu -- --ignored --test-threads 1 || status=1

step "example gpu_actors"
timeout 180 target/release/gpu_actors || status=1

step "bench_gpu"
timeout 300 target/release/bench_gpu || status=1

echo
echo "gpu-check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
