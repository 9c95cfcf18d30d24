#!/usr/bin/env bash
# remote.sh - issue 20's remote figures in one run (tests/bench/remote_bench.py
# says what is measured): a store pushed to SeaweedFS on loopback and read by
# an empty node through `modelfs mount --remote` (time to first byte, a cold
# read of every file, from_pretrained) against downloading the plain files
# from the same server and reading or loading them.
# Environment: MODELFS (default build/tools/modelfs), S3_PROBE (default
# build/tests/s3_probe), PY, MFS_BENCH_REPS (3), MFS_BENCH_MODELS
# (default "minilm-bf16 minilm-f32").  Needs root (or /dev/fuse access).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BIN="${MODELFS:-$ROOT/build/tools/modelfs}"
PROBE="${S3_PROBE:-$(dirname "$(dirname "$BIN")")/tests/s3_probe}"
for f in "$BIN" "$PROBE"; do
    [ -x "$f" ] || { echo "remote.sh: $f is missing: run ./run build first" >&2; exit 1; }
done
# shellcheck disable=SC2086
exec "$PY" "$ROOT/tests/bench/remote_bench.py" "$BIN" "$PROBE" "${MFS_BENCH_REPS:-3}" \
    ${MFS_BENCH_MODELS:-minilm-bf16 minilm-f32}
