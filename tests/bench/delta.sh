#!/usr/bin/env bash
# delta.sh - fine-tunes stored as xor-deltas against their base (issue 17).
#
# The family: all-MiniLM-L6-v2 (the real model from PyPI) and three real CPU
# fine-tunes of it (tests/e2e/fixtures.py: full, frozen lower layers, a second
# full one), in F32 and in BF16. One command, one run, the same tensors:
#
#   modelfs        payload bytes the fine-tune adds to a store holding its
#                  base (`modelfs ingest`'s "bytes new": every file, the
#                  header chunk and small files included)
#   xor+zstd-3     BitX: XOR with the base tensor, zstd -3 (per 1 MiB chunk,
#                  as modelfs cuts tensors, and per whole tensor)
#   xor+zipnn      the XOR given to ZipNN 0.5.4
#   zipnn          ZipNN on the fine-tune alone
#   bound          order-0 bound of the XOR's byte planes, per 1 MiB chunk
#   (tests/bench/delta_ref.py computes the four references)
# then the delta decoder's speed per core (bench_codecs, reused buffers) and
# a cold read of each fine-tune's model.safetensors through a fresh mount
# (after drop_caches) against the same read of its base.
# Targets: modelfs below xor+zipnn and xor+zstd-3, within 2 points of the
# bound; delta decode >= 1 GB/s per core; fine-tune cold read >= 0.8x base.
#
# Environment: MODELFS (default build/tools/modelfs), PYTHON, MFS_BENCH_REPS (3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODELFS="${MODELFS:-$ROOT/build/tools/modelfs}"
BENCH_CODECS="${BENCH_CODECS:-$(dirname "$MODELFS")/../tests/bench/bench_codecs}"
REPS="${MFS_BENCH_REPS:-3}"
HELPER="$ROOT/tests/bench/mount_bench.py"
[ -x "$MODELFS" ] || { echo "no modelfs binary at $MODELFS (run ./run build)" >&2; exit 1; }
log() { printf '[bench delta] %s\n' "$*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelfs-bench-delta.XXXXXX")"
MNT="$WORK/mnt"
mkdir -p "$MNT"
# shellcheck source=tests/bench/mount_lib.bash
. "$ROOT/tests/bench/mount_lib.bash"
cleanup() { unmount; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
snap_file() { # mount-root repo file
	local d="$MNT/models--${1//\//--}"
	echo "$d/snapshots/$(cat "$d/refs/main")/$2"
}

"$PY" "$ROOT/tests/e2e/fixtures.py" all >/dev/null ||
	{ echo "cannot build the model fixtures (tests/e2e/fixtures.py)" >&2; exit 1; }
MODELS="$ROOT/tests/data/models"
BASE=sentence-transformers/all-MiniLM-L6-v2

printf '\nbytes a fine-tune adds (%% of its tensor bytes), one run, same tensors:\n'
printf '%-22s %11s %16s %16s %16s %16s %16s %16s %7s\n' fine-tune "raw" modelfs \
	"xor+zstd3/chunk" "xor+zstd3/tensor" "xor+zipnn" "zipnn alone" "bound (bytes)" "vs bnd"
for dt in f32 bf16; do
	base_src="$MODELS/minilm-$dt"
	store="$WORK/store-$dt"
	"$MODELFS" --store "$store" ingest --quiet --repo "$BASE" "$base_src" >/dev/null 2>&1
	for kind in full frozen second; do
		src="$MODELS/minilm-ft-$kind-$dt"
		out=$("$MODELFS" --store "$store" ingest --quiet --repo "tuner/$kind-$dt" "$src" 2>"$WORK/err")
		new=$(echo "$out" | sed -n 's/.*; \([0-9]*\) bytes new.*/\1/p')
		"$PY" "$ROOT/tests/bench/delta_ref.py" "$base_src/model.safetensors" \
			"$src/model.safetensors" --json >"$WORK/ref.json"
		raw=$(json "$WORK/ref.json" 'd["methods"]["raw"]["bytes"]')
		row() { json "$WORK/ref.json" "'%d (%.1f%%)' % (d['methods']['$1']['bytes'], d['methods']['$1']['pct'])"; }
		bound_pct=$(json "$WORK/ref.json" 'd["methods"]["h0 a bytes/chunk"]["pct"]')
		mine_pct=$(awk -v n="$new" -v r="$raw" 'BEGIN{printf "%.1f", 100*n/r}')
		printf '%-22s %11s %16s %16s %16s %16s %16s %16s %+6.1f\n' "$kind-$dt" "$raw" \
			"$new ($mine_pct%)" "$(row 'xor+zstd3/chunk')" "$(row 'xor+zstd3/tensor')" \
			"$(row 'xor+zipnn')" "$(row zipnn)" "$(row 'h0 a bytes/chunk')" \
			"$(awk -v a="$mine_pct" -v b="$bound_pct" 'BEGIN{print a-b}')"
	done
done
echo "(vs bnd: modelfs minus the byte-plane order-0 bound, in points of the raw size)"

if [ -x "$BENCH_CODECS" ]; then
	printf '\ndelta decode, one core, reused buffers:\n'
	for dt in f32 bf16; do
		"$BENCH_CODECS" --delta "$MODELS/minilm-$dt/model.safetensors" \
			"$MODELS/minilm-ft-full-$dt/model.safetensors" || true
	done
else
	log "no bench_codecs at $BENCH_CODECS: decode speed skipped (build it: ./run build)"
fi

printf '\ncold read of model.safetensors through a fresh mount (drop_caches%s), MB/s, median of %s:\n' \
	"$([ $CAN_DROP = 1 ] || echo ': NOT possible here, page cache warm')" "$REPS"
printf '%-22s %10s %10s %7s\n' fine-tune base "fine-tune" ratio
for dt in f32 bf16; do
	store="$WORK/store-$dt"
	for kind in full frozen second; do
		: >"$WORK/b"
		: >"$WORK/f"
		for _ in $(seq "$REPS"); do
			mount_store "$store"
			drop_caches
			"$PY" "$HELPER" read "$(snap_file "$BASE" model.safetensors)" |
				"$PY" -c 'import json,sys; print(json.load(sys.stdin)["mbs"])' >>"$WORK/b"
			mount_store "$store"
			drop_caches
			"$PY" "$HELPER" read "$(snap_file "tuner/$kind-$dt" model.safetensors)" |
				"$PY" -c 'import json,sys; print(json.load(sys.stdin)["mbs"])' >>"$WORK/f"
		done
		b=$(median <"$WORK/b")
		f=$(median <"$WORK/f")
		printf '%-22s %10.1f %10.1f %6.2fx\n' "$kind-$dt" "$b" "$f" \
			"$(awk -v f="$f" -v b="$b" 'BEGIN{print f/b}')"
	done
done
unmount
