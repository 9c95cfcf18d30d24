#!/usr/bin/env bash
# Store benchmark (issue 2 figures): ingest and export of the real model
# (all-MiniLM-L6-v2, F32) and its BF16 variant, with zstd forced and with the
# per-tensor codec choice; then a second ingest of identical content.
# One run, one table; ratios are comparable within the run, absolute MB/s
# are those of this (shared, noisy) machine.
#
#   tests/bench/store.sh [MODELFS_BINARY]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-${MODELFS:-$ROOT/build/tools/modelfs}}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$BIN" ] || { echo "no modelfs binary at $BIN (run ./run build)" >&2; exit 1; }
MODELS="$ROOT/tests/data/models"
if [ ! -d "$MODELS/minilm-bf16" ]; then
	"$PY" "$ROOT/tests/e2e/fixtures.py" all >&2 ||
		{ echo "cannot build the model fixtures (tests/e2e/fixtures.py)" >&2; exit 1; }
fi
WORK="$(mktemp -d /tmp/modelfs-bench-store.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

field() { sed -n "s/.*$1 \([0-9.]*\).*/\1/p"; }

printf '%-12s %-8s %12s %12s %7s %6s %10s %10s %14s\n' model codec "bytes in" "stored" \
	ratio "% raw" "ingest MB/s" "export MB/s" "2nd ingest new"
for model in minilm-f32 minilm-bf16; do
	for codec in zstd auto; do
		store="$WORK/$model-$codec"
		args=()
		[ "$codec" = auto ] || args=(--codec "$codec")
		out=$("$BIN" --store "$store" ingest --quiet "${args[@]}" --repo org/m \
			"$MODELS/$model")
		bin=$(echo "$out" | sed -n 's/.*, \([0-9]*\) bytes in.*/\1/p')
		stored=$(echo "$out" | sed -n 's/.*, \([0-9]*\) bytes stored.*/\1/p')
		ratio=$(echo "$out" | sed -n 's/.*(ratio \([0-9.]*\)).*/\1/p')
		imbs=$(echo "$out" | sed -n 's/.*), \([0-9.]*\) MB\/s.*/\1/p')
		ex=$("$BIN" --store "$store" export --quiet org/m "$WORK/export-$model-$codec")
		embs=$(echo "$ex" | sed -n 's/.* s, \([0-9.]*\) MB\/s.*/\1/p')
		(cd "$MODELS/$model" && find . -type f | sort | xargs sha256sum) >"$WORK/a"
		(cd "$WORK/export-$model-$codec" && find . -type f | sort | xargs sha256sum) \
			>"$WORK/b"
		cmp -s "$WORK/a" "$WORK/b" || { echo "EXPORT MISMATCH $model $codec" >&2; exit 1; }
		again=$("$BIN" --store "$store" ingest --quiet "${args[@]}" --repo org/m-again \
			"$MODELS/$model")
		new=$(echo "$again" | sed -n 's/.*; \([0-9]*\) bytes new.*/\1/p')
		pct=$(awk -v s="$stored" -v b="$bin" 'BEGIN{printf "%.1f", 100*s/b}')
		printf '%-12s %-8s %12s %12s %7s %6s %10s %10s %14s\n' "$model" "$codec" "$bin" \
			"$stored" "$ratio" "$pct" "$imbs" "$embs" "$new"
	done
done
echo "(export: sha256 of every file checked equal; 2nd ingest new = payload bytes a"
echo " second ingest of the same folder under another repo name added: 0 = full dedup)"
