#!/usr/bin/env bash
# quant.sh - a BF16 model and its quantized twins stored as pairs (issue 18).
#
# all-MiniLM-L6-v2 in BF16 (tests/e2e/fixtures.py: minilm-bf16) and five
# quantizations of it (minilm-int8-channel, -int8-group, -fp8-tensor,
# -fp8-channel, -fp8-block: every 2-D Linear weight as int8 or FP8 E4M3 codes
# plus scales, the rest bit-identical). One command, one run, the same tensors,
# for each pair in a fresh store (the BF16 model ingested first, then the twin
# with --quantized-of):
#
#   modelfs        the pair's stored bytes: `modelfs info --json`'s stored
#                  bytes of the BF16 tensors that have a twin (in the BF16
#                  repo) plus the twin's codes and scales (in the twin's repo)
#   zipnn+zstd3    BF16 tensors with ZipNN 0.5.4, codes and scales with zstd
#                  -3, per 1 MiB chunk as modelfs cuts tensors, and per tensor
#   zipnn both     ZipNN on each tensor of both
#   bound          the order-0 bound of "dequantize, then code the BF16 value's
#                  distance from the dequantized one, given the code" + the
#                  codes' order-0 bound + the scales raw, per 1 MiB chunk
#   (tests/bench/quant_ref.py computes the references; all as % of the pair's
#   raw bytes: the BF16 tensors that have a twin + the twin's codes and scales)
# and the whole store: its payload (the last line of `modelfs ls`, after
# `modelfs gc`) against the two folders' bytes and quant_ref.py's whole-file
# figures; then the BF16 decode speed from the pair (bench_codecs --quant) and
# a cold read of the BF16 model.safetensors through a fresh mount of the pair
# store (after drop_caches) against the same read from a store holding the
# BF16 model alone.
# Targets: each pair <= 46% of its raw bytes (QStore reports 45%); BF16 decode
# from the pair >= 1 GB/s per core; cold read >= 0.8x the BF16 model alone.
#
# Environment: MODELFS (default build/tools/modelfs), BENCH_CODECS, PYTHON,
# MFS_BENCH_REPS (3), MFS_QUANT_PAIRS (default: the five pairs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODELFS="${MODELFS:-$ROOT/build/tools/modelfs}"
BENCH_CODECS="${BENCH_CODECS:-$(dirname "$MODELFS")/../tests/bench/bench_codecs}"
REPS="${MFS_BENCH_REPS:-3}"
PAIRS="${MFS_QUANT_PAIRS:-int8-channel int8-group fp8-tensor fp8-channel fp8-block}"
HELPER="$ROOT/tests/bench/mount_bench.py"
[ -x "$MODELFS" ] || { echo "no modelfs binary at $MODELFS (run ./run build)" >&2; exit 1; }
log() { printf '[bench quant] %s\n' "$*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelfs-bench-quant.XXXXXX")"
MNT="$WORK/mnt"
mkdir -p "$MNT"
# shellcheck source=tests/bench/mount_lib.bash
. "$ROOT/tests/bench/mount_lib.bash"
cleanup() { unmount; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
snap_file() { # repo file: the file's path in the mount's snapshot of main
	local d="$MNT/models--${1//\//--}"
	echo "$d/snapshots/$(cat "$d/refs/main")/$2"
}
# payload_bytes STORE: the payload the last line of `modelfs ls` reports
# ("... in 12.3 MB of payload"), in bytes (to the 0.1 unit ls prints)
payload_bytes() {
	"$MODELFS" --store "$1" ls | tail -n 1 | "$PY" -c '
import re, sys
m = re.search(r" in ([0-9.]+) (B|kB|MB|GB|TB) of payload", sys.stdin.read())
if not m:
    sys.exit("quant.sh: no \"... of payload\" in the last line of modelfs ls")
mult = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[m.group(2)]
print(int(float(m.group(1)) * mult))'
}
# pair_stored STORE TWIN_REPO REF_JSON: "PAIR FILES": the stored bytes of the
# pair's tensors, and of both model.safetensors with the tensors the twin
# shares byte for byte with the BF16 model counted once (modelfs info --json)
pair_stored() {
	"$MODELFS" --store "$1" info --json "$HP" >"$WORK/info-hp.json"
	"$MODELFS" --store "$1" info --json "$2" >"$WORK/info-q.json"
	"$PY" - "$WORK/info-hp.json" "$WORK/info-q.json" "$3" <<-'EOF'
	import json, sys
	hp, q, ref = (json.load(open(p)) for p in sys.argv[1:4])
	def model_file(info):
	    for f in info["files"]:
	        if f["path"] == "model.safetensors":
	            return f
	    sys.exit("quant.sh: modelfs info lists no model.safetensors in " + info["repo"])
	def stored(info, names):
	    want, total = set(names), 0
	    for t in model_file(info)["tensors"]:
	        if t["name"] in want:
	            want.discard(t["name"])
	            total += t["stored_bytes"]
	    if want:
	        sys.exit("quant.sh: modelfs info lists no tensor " + sorted(want)[0])
	    return total
	pair = stored(hp, ref["pair_tensors"]["hp"]) + stored(q, ref["pair_tensors"]["twin"])
	files = (model_file(hp)["stored_bytes"] + model_file(q)["stored_bytes"]
	         - stored(q, ref["shared"]))
	print(pair, files)
	EOF
}

"$PY" "$ROOT/tests/e2e/fixtures.py" all >/dev/null ||
	{ echo "cannot build the model fixtures (tests/e2e/fixtures.py)" >&2; exit 1; }
MODELS="$ROOT/tests/data/models"
HP=sentence-transformers/all-MiniLM-L6-v2
HP_SRC="$MODELS/minilm-bf16"

QFLAG=1
if ! "$MODELFS" ingest --help 2>&1 | grep -q -- '--quantized-of'; then
	QFLAG=0
	log "modelfs ingest has no --quantized-of: each twin is ingested without it (the store pairs nothing unless it proposes the pair itself)"
fi

# The BF16 model alone: the cold-read reference.
ALONE="$WORK/store-alone"
"$MODELFS" --store "$ALONE" ingest --quiet --repo "$HP" "$HP_SRC" >/dev/null 2>&1

printf '\nstored bytes of each pair (%% of the pair'\''s raw bytes: BF16 tensors with a twin + codes + scales), one run, same tensors:\n'
printf '%-14s %10s %18s %18s %18s %18s %18s %6s\n' pair raw modelfs \
	"zipnn+zstd3/chunk" "zipnn+zstd3/tensor" "zipnn both" "bound" "vs bnd"
: >"$WORK/store-rows"
for name in $PAIRS; do
	src="$MODELS/minilm-$name"
	store="$WORK/store-$name"
	repo="quant/$name"
	"$MODELFS" --store "$store" ingest --quiet --repo "$HP" "$HP_SRC" >/dev/null 2>"$WORK/err" ||
		{ cat "$WORK/err" >&2; exit 1; }
	if [ "$QFLAG" = 1 ]; then
		"$MODELFS" --store "$store" ingest --quiet --repo "$repo" --quantized-of "$HP" "$src" \
			>/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
	else
		"$MODELFS" --store "$store" ingest --quiet --repo "$repo" "$src" \
			>/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
	fi
	"$MODELFS" --store "$store" gc >/dev/null 2>&1 || log "$name: modelfs gc failed"
	"$PY" "$ROOT/tests/bench/quant_ref.py" "$HP_SRC/model.safetensors" "$src/model.safetensors" \
		--json >"$WORK/ref-$name.json"
	ref="$WORK/ref-$name.json"
	raw=$(json "$ref" 'd["raw"]["pair"]')
	stored=$(pair_stored "$store" "$repo" "$ref")
	read -r mine mine_files <<<"$stored"
	mine_pct=$(awk -v n="$mine" -v r="$raw" 'BEGIN{printf "%.1f", 100*n/r}')
	bound_pct=$(json "$ref" 'd["methods"]["bound"]["pct"]')
	row() { json "$ref" "'%d (%.1f%%)' % (d['methods']['$1']['bytes'], d['methods']['$1']['pct'])"; }
	printf '%-14s %10s %18s %18s %18s %18s %18s %+6.1f\n' "$name" "$raw" "$mine ($mine_pct%)" \
		"$(row 'zipnn+zstd3/chunk')" "$(row 'zipnn+zstd3/tensor')" "$(row 'zipnn both')" \
		"$(row bound)" "$(awk -v a="$mine_pct" -v b="$bound_pct" 'BEGIN{print a-b}')"
	payload=$(payload_bytes "$store")
	folders=$(du -sb --apparent-size "$HP_SRC" "$src" | awk '{s+=$1} END {print s}')
	files=$(json "$ref" 'd["raw"]["files"]')
	frow() { json "$ref" "'%d (%.1f%%)' % (d['methods']['$1']['files_bytes'], d['methods']['$1']['files_pct'])"; }
	printf '%-14s %10s %18s %18s %18s %18s %18s %22s\n' "$name" "$files" \
		"$mine_files ($(awk -v n="$mine_files" -v r="$files" 'BEGIN{printf "%.1f", 100*n/r}')%)" \
		"$(frow 'zipnn+zstd3/chunk')" "$(frow 'zipnn+zstd3/tensor')" "$(frow 'zipnn both')" \
		"$(frow bound)" \
		"$payload/$folders ($(awk -v n="$payload" -v r="$folders" 'BEGIN{printf "%.1f", 100*n/r}')%)" \
		>>"$WORK/store-rows"
done
echo "(vs bnd: modelfs minus the bound, in points of the pair's raw bytes; target: modelfs <= 46.0%)"
[ "$QFLAG" = 1 ] || echo "(modelfs here: the twin ingested WITHOUT --quantized-of, which this modelfs lacks)"

printf '\nboth model.safetensors files (%% of the two files'\'' bytes; the tensors the twin shares byte for byte counted once), and the store payload (modelfs ls after gc, to 0.1 MB) / both folders'\'' bytes:\n'
printf '%-14s %10s %18s %18s %18s %18s %18s %22s\n' pair "two files" modelfs \
	"zipnn+zstd3/chunk" "zipnn+zstd3/tensor" "zipnn both" "bound" "store payload/folders"
cat "$WORK/store-rows"

printf '\nBF16 decode from the pair, one core (target >= 1 GB/s per core):\n'
# (its usage text: it exits 2 after printing it, which under pipefail would
# fail the pipe into grep)
if [ -x "$BENCH_CODECS" ] && { "$BENCH_CODECS" --help 2>&1 || true; } | grep -q -- '--quant'; then
	for name in $PAIRS; do
		"$BENCH_CODECS" --quant "$HP_SRC/model.safetensors" \
			"$MODELS/minilm-$name/model.safetensors" || log "$name: bench_codecs --quant failed"
	done
else
	echo "bench_codecs --quant is missing (no $BENCH_CODECS, or it has no --quant): decode speed not measured"
fi

printf '\ncold read of the BF16 model.safetensors through a fresh mount (drop_caches%s), MB/s, median of %s (target >= 0.80x):\n' \
	"$([ $CAN_DROP = 1 ] || echo ': NOT possible here, page cache warm')" "$REPS"
printf '%-14s %12s %12s %7s\n' pair "BF16 alone" "from pair" ratio
for name in $PAIRS; do
	store="$WORK/store-$name"
	: >"$WORK/a"
	: >"$WORK/p"
	for i in $(seq "$REPS"); do
		# alternate which store goes first, so neither always reads after the other
		if [ $((i % 2)) = 1 ]; then order="$ALONE:a $store:p"; else order="$store:p $ALONE:a"; fi
		for s_out in $order; do
			mount_store "${s_out%:*}"
			drop_caches
			"$PY" "$HELPER" read "$(snap_file "$HP" model.safetensors)" |
				"$PY" -c 'import json,sys; print(json.load(sys.stdin)["mbs"])' >>"$WORK/${s_out##*:}"
		done
	done
	a=$(median <"$WORK/a")
	p=$(median <"$WORK/p")
	printf '%-14s %12.1f %12.1f %6.2fx\n' "$name" "$a" "$p" \
		"$(awk -v p="$p" -v a="$a" 'BEGIN{print p/a}')"
done
unmount
