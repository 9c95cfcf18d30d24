#!/bin/sh
# codecs.sh - one table: bitplane-huff vs zstd -3/-19 (bench_codecs) and
# ZipNN (bench_zipnn.py) on the same safetensors files, per dtype, one thread.
#
#   tests/bench/codecs.sh FILE.safetensors...
#
# Environment: BENCH_CODECS (default build/tests/bench/bench_codecs),
# PYTHON (default python3; needs the zipnn package, else its rows are left
# out with a note).  Columns: raw MB, stored % of raw, encode and decode MB/s
# (MB = 1e6 raw bytes); decode is the best of 7 passes per tensor for every
# codec, bitplane-huff and zstd in 1 MiB chunks into a reused pre-faulted
# buffer, ZipNN on whole tensors with threads=1.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${BENCH_CODECS:-$root/build/tests/bench/bench_codecs}
py=${PYTHON:-python3}
[ -n "${PYTHON:-}" ] || [ ! -x "$root/.venv/bin/python" ] || py=$root/.venv/bin/python
if [ $# -eq 0 ]; then
	# default: the real weights of the test fixtures (F32, BF16, F16 variants
	# of all-MiniLM-L6-v2 and the wordllama F16 tensor)
	models=$root/tests/data/models
	if [ ! -f "$models/minilm-bf16/model.safetensors" ]; then
		"$py" "$root/tests/e2e/fixtures.py" all >&2 ||
			{ echo "codecs.sh: cannot build the model fixtures" >&2; exit 2; }
	fi
	set -- "$models"/minilm-f32/model.safetensors "$models"/minilm-bf16/model.safetensors \
		"$models"/minilm-fp16/model.safetensors $(ls "$models"/wordllama/*.safetensors)
fi
if [ ! -x "$bin" ]; then
	echo "codecs.sh: $bin not found; build it (cmake --build build --target bench_codecs)" \
	     "or set BENCH_CODECS" >&2
	exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" --tsv "$@" >"$tmp/c.tsv"
zrc=0
"$py" "$here/bench_zipnn.py" --tsv "$@" >"$tmp/z.tsv" || zrc=$?
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; one thread"
printf '%-6s %-14s %9s %9s %10s %10s\n' dtype codec "raw MB" stored% "enc MB/s" "dec MB/s"
for dt in BF16 F16 F32; do
	cat "$tmp/c.tsv" "$tmp/z.tsv" | awk -F'\t' -v dt="$dt" \
		'$1 == dt { printf "%-6s %-14s %9.1f %8.2f%% %10d %10d\n", $1, $2, $3, $4, $5, $6 }'
done
if [ "$zrc" -ne 0 ]; then
	echo "(ZipNN rows missing: bench_zipnn.py exited with $zrc; is zipnn installed for $py?)"
fi
