#!/usr/bin/env bash
# packs.sh - issue 20's local figures, in one run, on the BF16 and the F32
# fixture model (all-MiniLM-L6-v2 from PyPI, tests/e2e/fixtures.py):
#
#   space   the store on disk (du: allocated blocks of every file in it)
#           against the payload bytes of its chunks (what the codecs made;
#           the ingest's "bytes new"), as overhead % of payload (target:
#           at most 0.1%), and against ZipNN 0.5.4's bytes of the same files
#           (each float tensor alone, threads=1, as bench_zipnn.py; headers,
#           integer tensors and the other files with zstd -3), for
#             format 1   the last release that kept payloads in LMDB values
#                        (commit dadbabc), as its ingest leaves it, and after
#                        its gc --compact
#             format 2   this build's ingest (payloads in pack files)
#             upgraded   the format-1 store after `modelfs upgrade`
#   cold    every file read with cat through a fresh local mount, the page
#           cache dropped first (echo 3 > /proc/sys/vm/drop_caches as root;
#           else posix_fadvise DONTNEED on every file of the store and of
#           the originals, said in the output), against cat of the original
#           files dropped the same way: the old release's mount of its
#           store, this build's mount of its store and of the upgraded one;
#           median of MFS_BENCH_REPS (3) runs, interleaved
#
# Environment: MODELFS (this build; default build/tools/modelfs, built in
# Release if missing), MODELFS_OLD (a release binary of dadbabc; default:
# build-format1/build/tools/modelfs, built there from `git archive dadbabc`
# the first time, which takes a few minutes), PYTHON (default .venv/bin/python), MFS_BENCH_REPS, MFS_BENCH_MODELS
# (default "minilm-bf16 minilm-f32").  Every mount it makes is unmounted on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-${PY:-$ROOT/.venv/bin/python}}"
NEW="${MODELFS:-$ROOT/build/tools/modelfs}"
OLD="${MODELFS_OLD:-}"
REPS="${MFS_BENCH_REPS:-3}"
MODELS_WANTED="${MFS_BENCH_MODELS:-minilm-bf16 minilm-f32}"
HELPER="$ROOT/tests/bench/packs_bench.py"
FORMAT1_COMMIT=dadbabc
REPO="bench/m"

log() { printf '[bench packs] %s\n' "$*" >&2; }

if [ ! -x "$NEW" ]; then
	log "building a Release modelfs in $ROOT/build"
	cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$ROOT/build" -j"$(nproc)" --target modelfs >/dev/null
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelfs-bench-packs.XXXXXX")"
MNT="$WORK/mnt"
mkdir -p "$MNT"
MODELFS="$NEW"
# shellcheck source=tests/bench/mount_lib.bash
. "$ROOT/tests/bench/mount_lib.bash"
cleanup() {
	unmount
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the format-1 release, built once into build-format1/ (gitignored) and kept
OLD_DIR="$ROOT/build-format1"
if [ -z "$OLD" ]; then
	OLD="$OLD_DIR/build/tools/modelfs"
	if [ ! -x "$OLD" ]; then
		log "building the format-1 release ($FORMAT1_COMMIT) in $OLD_DIR (once; MODELFS_OLD skips this)"
		rm -rf "$OLD_DIR"
		mkdir -p "$OLD_DIR/src"
		git -C "$ROOT" archive "$FORMAT1_COMMIT" | tar -x -C "$OLD_DIR/src"
		cmake -S "$OLD_DIR/src" -B "$OLD_DIR/build" -DCMAKE_BUILD_TYPE=Release \
			-DMODELFS_CUDA=OFF >"$OLD_DIR/configure.log" 2>&1 ||
			{ cat "$OLD_DIR/configure.log" >&2; exit 1; }
		cmake --build "$OLD_DIR/build" -j"$(nproc)" --target modelfs >"$OLD_DIR/build.log" 2>&1 ||
			{ tail -n 40 "$OLD_DIR/build.log" >&2; exit 1; }
	fi
fi

# cold: drop the page cache (root), else evict every file of these paths
COLD_HOW="drop_caches"
[ "$CAN_DROP" = 1 ] || COLD_HOW="posix_fadvise DONTNEED (could not write /proc/sys/vm/drop_caches: not root)"
make_cold() {
	if [ "$CAN_DROP" = 1 ]; then
		drop_caches
	else
		sync
		"$PY" "$HELPER" evict "$@" >/dev/null
	fi
}
now() { date +%s.%N; }
json() { "$PY" -c "import json,sys; print(json.loads(sys.argv[1])$1)" "$2"; }

RESULTS="$WORK/results"
: >"$RESULTS"
record() { echo "$1 $2 $3" >>"$RESULTS"; } # model key value

# ingest SRC into STORE with BIN; prints the payload bytes it stored
ingest() {
	local bin="$1" store="$2" src="$3" out
	out=$("$bin" --store "$store" ingest --quiet --repo "$REPO" --no-base "$src" 2>"$WORK/ingest.err") ||
		{ cat "$WORK/ingest.err" >&2; exit 1; }
	echo "$out" | sed -n 's/.*; \([0-9]*\) bytes new.*/\1/p'
}

# cold_read BIN STORE SRC: seconds to cat every file through a fresh mount
cold_read() {
	local bin="$1" store="$2" src="$3" commit snap f t0 t1
	MODELFS="$bin"
	mount_store "$store"
	commit="$(cat "$MNT/models--${REPO//\//--}/refs/main")"
	snap="$MNT/models--${REPO//\//--}/snapshots/$commit"
	local files=()
	for f in "${REL[@]}"; do files+=("$snap/$f"); done
	make_cold "$store" "$src"
	t0=$(now)
	cat "${files[@]}" >/dev/null
	t1=$(now)
	unmount
	echo "$t1 - $t0" | bc -l
}

# the same files read exact through the mount (checked once per store)
check_mount() {
	local bin="$1" store="$2" src="$3" commit snap
	MODELFS="$bin"
	mount_store "$store"
	commit="$(cat "$MNT/models--${REPO//\//--}/refs/main")"
	snap="$MNT/models--${REPO//\//--}/snapshots/$commit"
	(cd "$src" && sha256sum "${REL[@]}") >"$WORK/want"
	(cd "$snap" && sha256sum "${REL[@]}") >"$WORK/have"
	unmount
	cmp -s "$WORK/want" "$WORK/have" || { log "MISMATCH through the mount of $store"; exit 1; }
}

for model in $MODELS_WANTED; do
	SRC="$("$PY" "$ROOT/tests/e2e/fixtures.py" path "$model" | tail -1)"
	mapfile -t REL < <(cd "$SRC" && find . -type f | sed 's|^\./||' | sort)
	RAW=$(cat "${REL[@]/#/$SRC/}" | wc -c)
	record "$model" raw "$RAW"
	log "$model: $RAW bytes in ${#REL[@]} files"
	S1="$WORK/$model-f1"
	S1C="$WORK/$model-f1c"
	S2="$WORK/$model-f2"
	SU="$WORK/$model-up"
	record "$model" payload_f1 "$(ingest "$OLD" "$S1" "$SRC")"
	record "$model" payload_f2 "$(ingest "$NEW" "$S2" "$SRC")"
	record "$model" du_f1 "$(json "['disk']" "$("$PY" "$HELPER" du "$S1")")"
	record "$model" du_f2 "$(json "['disk']" "$("$PY" "$HELPER" du "$S2")")"
	"$PY" "$HELPER" du "$S2" >"$WORK/$model-f2.du"
	cp -a "$S1" "$S1C"
	"$OLD" --store "$S1C" gc --compact >/dev/null
	record "$model" du_f1c "$(json "['disk']" "$("$PY" "$HELPER" du "$S1C")")"
	cp -a "$S1" "$SU"
	t0=$(now)
	"$NEW" --store "$SU" upgrade --quiet >"$WORK/$model-upgrade.log"
	t1=$(now)
	record "$model" upgrade_s "$(echo "$t1 - $t0" | bc -l)"
	record "$model" du_up "$(json "['disk']" "$("$PY" "$HELPER" du "$SU")")"
	"$PY" "$HELPER" du "$SU" >"$WORK/$model-up.du"
	log "$model: ZipNN"
	record "$model" zipnn "$(json "['bytes']" "$("$PY" "$HELPER" zipnn "$SRC")")"
	check_mount "$OLD" "$S1" "$SRC"
	check_mount "$NEW" "$S2" "$SRC"
	check_mount "$NEW" "$SU" "$SRC"
	log "$model: cold reads ($COLD_HOW), $REPS runs"
	for i in $(seq "$REPS"); do
		make_cold "$SRC"
		t0=$(now)
		cat "${REL[@]/#/$SRC/}" >/dev/null
		t1=$(now)
		record "$model" cold_cat "$(echo "$t1 - $t0" | bc -l)"
		record "$model" cold_f1 "$(cold_read "$OLD" "$S1" "$SRC")"
		record "$model" cold_f2 "$(cold_read "$NEW" "$S2" "$SRC")"
		record "$model" cold_up "$(cold_read "$NEW" "$SU" "$SRC")"
	done
	rm -rf "$S1" "$S1C" "$S2" "$SU"
done

"$PY" - "$RESULTS" "$WORK" "$COLD_HOW" "$MODELS_WANTED" <<'EOF'
import json, os, statistics, sys
res = {}
for line in open(sys.argv[1]):
    m, k, v = line.split()
    res.setdefault(m, {}).setdefault(k, []).append(float(v))
work, how, models = sys.argv[2], sys.argv[3], sys.argv[4].split()
cpu = "?"
for l in open("/proc/cpuinfo"):
    if l.startswith("model name"):
        cpu = l.split(":", 1)[1].strip()
        break
print(f"\nmodelfs packs benchmark (issue 20); machine: {cpu}, {os.cpu_count()} cores, "
      f"load average {os.getloadavg()[0]:.1f} at the end")
print(f"cold: page cache emptied by {how}; read = cat of every file, median of "
      f"{len(res[models[0]]['cold_cat'])} interleaved runs")
for m in models:
    r = {k: statistics.median(v) for k, v in res[m].items()}
    raw, pay = r["raw"], r["payload_f2"]
    print(f"\n{m}: {raw / 1e6:.2f} MB in the files; payload {pay / 1e6:.3f} MB "
          f"({100 * pay / raw:.2f}% of raw; format 1's ingest: {r['payload_f1'] / 1e6:.3f} MB)")
    print(f"{'':28s} {'on disk':>12s} {'% of raw':>9s} {'over payload':>13s} "
          f"{'vs ZipNN':>9s} {'cold read':>10s} {'MB/s':>7s} {'vs cat':>7s}")
    def row(name, disk, payload, cold=None):
        d = f"{disk:12.0f} {100 * disk / raw:8.2f}% "
        d += f"{100 * (disk - payload) / payload:+12.3f}% " if payload else f"{'':13s} "
        d += f"{100 * (disk - r['zipnn']) / r['zipnn']:+8.2f}%"
        if cold:
            d += f" {cold:9.3f}s {raw / cold / 1e6:7.0f} {r['cold_cat'] / cold:6.2f}x"
        print(f"{name:28s} {d}")
    print(f"{'plain files (cat)':28s} {raw:12.0f} {100.0:8.2f}% {'':13s} "
          f"{100 * (raw - r['zipnn']) / r['zipnn']:+8.2f}% {r['cold_cat']:9.3f}s "
          f"{raw / r['cold_cat'] / 1e6:7.0f} {1.0:6.2f}x")
    row("format 1 (dadbabc) ingest", r["du_f1"], r["payload_f1"], r["cold_f1"])
    row("format 1, gc --compact", r["du_f1c"], r["payload_f1"])
    row("format 2 ingest", r["du_f2"], pay, r["cold_f2"])
    row("format 2, upgraded from 1", r["du_up"], r["payload_f1"], r["cold_up"])
    row("ZipNN 0.5.4 (+ zstd -3)", r["zipnn"], None)
    for tag, name in (("f2", "format 2 ingest"), ("up", "upgraded")):
        du = json.load(open(f"{work}/{m}-{tag}.du"))
        packs = [v for k, v in du["files"].items() if k.startswith("packs/")]
        pk = sum(v[0] for v in packs)
        idx = du["files"].get("data.mdb", [0, 0])
        lock = du["files"].get("lock.mdb", [0, 0])
        print(f"  {name}: {len(packs)} pack file(s) {pk} bytes on disk "
              f"({100 * (pk - pay) / pay:+.3f}% over payload: entry and pack headers, "
              f"block rounding), data.mdb {idx[0]} on disk, lock.mdb {lock[0]}")
    print(f"  upgrade of the format-1 store: {r['upgrade_s']:.2f} s")
print("\ntargets: store on disk at most 0.1% over payload; BF16 store below ZipNN's bytes; "
      "cold read through the mount at least as fast as cat of the plain files")
EOF
