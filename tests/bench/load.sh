#!/usr/bin/env bash
# load.sh - loading a model's tensors three ways, on the BF16 variant of
# all-MiniLM-L6-v2 (the real model from PyPI, converted by
# tests/e2e/fixtures.py):
#   modelfs       modelfs.load_file(repo, store=...): the store read by the
#                 library, no mount (the chunks decoded on every core straight
#                 into the tensors)
#   safetensors   safetensors.torch.load_file of the plain model.safetensors
#   mount         safetensors.torch.load_file of the same file through a
#                 modelfs mount (tests/bench/mount_lib.bash)
# each cold and warm, in one run: MFS_BENCH_REPS (5) rounds of the six, the
# figure is the median.  Every load runs in a process of its own, timed after
# its imports, until every byte of every tensor has been touched (a mapped
# tensor is read only when used).
#   cold   the files read were dropped from the page cache first
#          (posix_fadvise DONTNEED of the store's data.mdb and packs, or of
#          model.safetensors, checked
#          with mincore; nothing else is evicted) and, for the mount, a fresh
#          daemon
#   warm   the same again right after: the file (store) in the page cache; for
#          the mount, the same mount (the kernel holds the file's pages)
# Target: modelfs cold no slower than safetensors cold (it reads a third
# fewer bytes and decodes on every core).
#
# Environment: MODELFS (binary; default build/tools/modelfs, built in Release
# if missing), PYTHON (default .venv/bin/python), MFS_BENCH_REPS,
# MODELFS_LIBRARY (a built libmodelfs.so to measure; unset: the checkout is
# installed first, pip install . (incremental), so that the library measured
# is this checkout's and not what an earlier install left in the venv).
# Every mount it makes is unmounted on exit, whatever happens.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
MODELFS="${MODELFS:-$ROOT/build/tools/modelfs}"
REPS="${MFS_BENCH_REPS:-5}"
HELPER="$ROOT/tests/bench/load_bench.py"
REPO="bench/minilm-bf16"

log() { printf '[bench load] %s\n' "$*" >&2; }

if [ ! -x "$MODELFS" ]; then
	log "building a Release modelfs in $ROOT/build"
	cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$ROOT/build" -j"$(nproc)" --target modelfs >/dev/null
fi
if [ -z "${MODELFS_LIBRARY:-}" ]; then
	log "installing this checkout's Python package (pip install ., incremental)"
	"$PY" -m pip install -q --disable-pip-version-check --no-build-isolation "$ROOT" </dev/null
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelfs-bench-load.XXXXXX")"
MNT="$WORK/mnt"
mkdir -p "$MNT"
# shellcheck source=tests/bench/mount_lib.bash
. "$ROOT/tests/bench/mount_lib.bash"

cleanup() {
	unmount
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MODEL="$("$PY" "$ROOT/tests/e2e/fixtures.py" path minilm-bf16 | tail -1)"
PLAIN="$MODEL/model.safetensors"
log "model: $PLAIN ($(stat -c %s "$PLAIN") bytes)"
"$MODELFS" --store "$WORK/store" ingest "$MODEL" --repo "$REPO" --quiet >"$WORK/ingest.log" 2>&1 ||
	{ cat "$WORK/ingest.log" >&2; exit 1; }
# the store's files: the index and the packs that hold the payloads
STORE_FILES=("$WORK/store/data.mdb" "$WORK/store"/packs/*.pack)
log "store: $(du -cb "${STORE_FILES[@]}" | tail -1 | cut -f1) bytes in data.mdb and $((${#STORE_FILES[@]} - 1)) packs"

RESULTS="$WORK/results"
: >"$RESULTS"
# evict FILE...: out of the page cache, or stop (a cold figure must be cold)
evict() {
	local left
	left="$("$PY" "$HELPER" evict "$@")"
	# shellcheck disable=SC2086 # one fraction per file
	if ! "$PY" -c "import sys; sys.exit(max(map(float, sys.argv[1:])) > 0.02)" $left; then
		log "could not drop $* from the page cache ($left of them still resident)"
		exit 1
	fi
}
one() { "$PY" "$HELPER" one "$@" >>"$RESULTS"; }

snapshot_file() {
	local commit
	commit="$(cat "$MNT/models--${REPO//\//--}/refs/main")"
	echo "$MNT/models--${REPO//\//--}/snapshots/$commit/model.safetensors"
}

for i in $(seq "$REPS"); do
	log "round $i of $REPS"
	unmount # nothing maps the store while the library reads it
	evict "${STORE_FILES[@]}"
	one modelfs "$WORK/store" "$REPO" --label "modelfs cold"
	one modelfs "$WORK/store" "$REPO" --label "modelfs warm"
	evict "$PLAIN"
	one plain "$PLAIN" --label "safetensors cold"
	one plain "$PLAIN" --label "safetensors warm"
	evict "${STORE_FILES[@]}"
	mount_store "$WORK/store"
	f="$(snapshot_file)"
	one mount "$f" --label "mount cold"
	one mount "$f" --label "mount warm"
done
unmount
"$PY" "$HELPER" table "$RESULTS"
