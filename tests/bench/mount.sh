#!/usr/bin/env bash
# mount.sh - benchmark of `modelfs mount` on the bf16 variant of
# all-MiniLM-L6-v2 (the real model from PyPI, converted by tests/e2e/fixtures.py).
#
# One command, one run; each figure is the median of MFS_BENCH_REPS (3) tries:
#   page cache   read the original files, already in the page cache
#   zstd -dc     decompress the same files, compressed at level 3 (the .zst in
#                the page cache), to /dev/null; "cold": after drop_caches
#   mount cold   read every file through a fresh mount after drop_caches (the
#                store comes from disk, every chunk is decoded)
#   mount fresh  the same with the store's pages in the page cache (decode only)
#   mount warm   read everything again through the same mount (page cache),
#                in 3 x REPS pairs interleaved with "page cache" (the ratio
#                judged is the median of the per-pair ratios)
#   from_pretrained  AutoModel.from_pretrained wall time (after imports, every
#                weight touched): the plain folder (page cache), the same files
#                laid out as an on-disk HF cache (load by repo id, which costs
#                huggingface_hub's own lookups), and a fresh mount with
#                HF_HUB_CACHE + HF_HUB_OFFLINE=1 (nothing read through it before
#                the clock starts), then again through the same mount, through
#                a fresh mount with --prefetch-model no, and through a fresh
#                mount whose daemon has decoded
#                every chunk before (an O_DIRECT read of every file first: the
#                page cache stays empty) (REPS + 2 runs)
# Targets: a read through a fresh mount faster than zstd -dc, like for like
# (store and .zst in the page cache; and, as root, both dropped from it);
# warm within 1.5x of page cache; from_pretrained through a fresh mount within
# 1.3x of the plain folder (and, for reference, again through the same mount).
#
# Environment: MODELFS (binary; default build/tools/modelfs, built in Release
# if missing), PYTHON (default .venv/bin/python), MFS_BENCH_REPS.
# Every mount it makes is unmounted on exit, whatever happens.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
MODELFS="${MODELFS:-$ROOT/build/tools/modelfs}"
REPS="${MFS_BENCH_REPS:-3}"
HELPER="$ROOT/tests/bench/mount_bench.py"
REPO="bench/minilm-bf16"

log() { printf '[bench mount] %s\n' "$*" >&2; }

if [ ! -x "$MODELFS" ]; then
	log "building a Release modelfs in $ROOT/build"
	cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$ROOT/build" -j"$(nproc)" --target modelfs >/dev/null
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelfs-bench.XXXXXX")"
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

# mount_fresh [FLAG...]: a new daemon over the store, with these extra flags
mount_fresh() { mount_store "$WORK/store" "$@"; }

# MNTF: the model's files in the snapshot of the mount
mount_files() {
	local commit snap f
	commit="$(cat "$MNT/models--${REPO//\//--}/refs/main")"
	snap="$MNT/models--${REPO//\//--}/snapshots/$commit"
	MNTF=()
	for f in "${REL[@]}"; do MNTF+=("$snap/$f"); done
}

# CPU seconds (user + sys) the mount daemon has used so far
daemon_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$DAEMON_PID/stat"; }
# page faults of the daemon so far (minor: fresh memory and mapped store pages)
daemon_minflt() { awk '{print $10}' "/proc/$DAEMON_PID/stat"; }

json() { "$PY" -c "import json,sys; print(json.loads(sys.argv[1])['$1'])" "$2"; }
now() { date +%s.%N; }

RESULTS="$WORK/results"
: >"$RESULTS"
record() { echo "$1 $2" >>"$RESULTS"; }

MODEL="$("$PY" "$ROOT/tests/e2e/fixtures.py" path minilm-bf16 | tail -1)"
log "model: $MODEL"
mapfile -t REL < <(cd "$MODEL" && find . -type f | sed 's|^\./||' | sort)
ORIG=()
for f in "${REL[@]}"; do ORIG+=("$MODEL/$f"); done
TOTAL=$(cat "${ORIG[@]}" | wc -c)
log "$TOTAL bytes in ${#REL[@]} files"

log "ingest"
"$MODELFS" --store "$WORK/store" ingest "$MODEL" --repo "$REPO" >"$WORK/ingest.log" 2>&1 ||
	{ cat "$WORK/ingest.log" >&2; exit 1; }
STORED=$(du -sb --apparent-size "$WORK/store" | cut -f1)
record store_bytes "$STORED"

# ---- originals into the page cache (read against the mount below)
"$PY" "$HELPER" read "${ORIG[@]}" >/dev/null

# ---- zstd -dc of the same files at level 3
mkdir -p "$WORK/zst"
ZST=()
for i in "${!REL[@]}"; do
	zstd -q -3 -c "${ORIG[$i]}" >"$WORK/zst/$i.zst"
	ZST+=("$WORK/zst/$i.zst")
done
record zstd_bytes "$(cat "${ZST[@]}" | wc -c)"
for i in $(seq "$REPS"); do
	t0=$(now)
	zstd -q -dc "${ZST[@]}" >/dev/null
	t1=$(now)
	record zstd_mbs "$(echo "$TOTAL / ($t1 - $t0) / 1000000" | bc -l)"
	drop_caches
	t0=$(now)
	zstd -q -dc "${ZST[@]}" >/dev/null
	t1=$(now)
	record zstd_cold_mbs "$(echo "$TOTAL / ($t1 - $t0) / 1000000" | bc -l)"
done

# ---- through the mount: cold, fresh, warm
for i in $(seq "$REPS"); do
	mount_fresh
	mount_files
	drop_caches
	d0=$(daemon_cpu)
	record cold_mbs "$(json mbs "$("$PY" "$HELPER" read "${MNTF[@]}")")"
	record cold_daemon_cpu "$(echo "$(daemon_cpu) - $d0" | bc -l)"
	mount_fresh
	"$PY" "$HELPER" read "${ORIG[@]}" >/dev/null # keep the python pages warm
	d0=$(daemon_cpu)
	f0=$(daemon_minflt)
	record fresh_mbs "$(json mbs "$("$PY" "$HELPER" read "${MNTF[@]}")")"
	record fresh_daemon_cpu "$(echo "$(daemon_cpu) - $d0" | bc -l)"
	record fresh_daemon_minflt "$(($(daemon_minflt) - f0))"
done

# ---- warm re-read: the mount's page cache against the originals', in
# interleaved pairs (both halves of a pair meet the same machine: the
# target is judged on the median of the per-pair ratios)
mount_fresh
mount_files
"$PY" "$HELPER" read "${MNTF[@]}" >/dev/null # the kernel now holds every page
for i in $(seq $((REPS * 3))); do
	p="$(json mbs "$("$PY" "$HELPER" read --passes 10 "${ORIG[@]}")")"
	w="$(json mbs "$("$PY" "$HELPER" read --passes 10 "${MNTF[@]}")")"
	record page_mbs "$p"
	record warm_mbs "$w"
	record warm_ratio "$(echo "$p / $w" | bc -l)"
done

# ---- from_pretrained: plain folder, the same files as an on-disk HF cache, a fresh mount
"$PY" - "$ROOT/tests/e2e" "$MODEL" "$REPO" "$WORK/plaincache" <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import fixtures
fixtures.hf_cache(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
PYEOF
# from_pretrained of the repo id from the hub cache at $1, offline (JSON out);
# the model's module is imported with the folder's config.json, so the cache
# sees its first request inside the timing
load_hub() {
	HF_HUB_CACHE="$1" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" "$HELPER" load "$REPO" "$MODEL" 2>/dev/null
}
LOAD_REPS=$((REPS + 2))
for i in $(seq "$LOAD_REPS"); do
	out="$(HF_HUB_OFFLINE=1 "$PY" "$HELPER" load "$MODEL" 2>/dev/null)"
	record load_plain_s "$(json seconds "$out")"
	record load_plain_cpu "$(json cpu "$out")"
	out="$(load_hub "$WORK/plaincache")"
	record load_cache_s "$(json seconds "$out")"
	record load_cache_cpu "$(json cpu "$out")"
	mount_fresh
	d0=$(daemon_cpu)
	out="$(load_hub "$MNT")"
	d1=$(daemon_cpu)
	record load_mount_s "$(json seconds "$out")"
	record load_mount_cpu "$(echo "$(json cpu "$out") + $d1 - $d0" | bc -l)"
	# again through the same mount: the kernel page cache now holds the files
	out="$(load_hub "$MNT")"
	record load_mount_warm_s "$(json seconds "$out")"
	# a fresh mount without prefetch_model: what decoding the weights from
	# the first config.json read on gains
	mount_fresh --prefetch-model no
	out="$(load_hub "$MNT")"
	record load_mount_nopm_s "$(json seconds "$out")"
	# a fresh mount whose daemon has decoded every chunk already (an O_DIRECT
	# read leaves the kernel's page cache empty): what the decode costs a
	# load that waits for it, against the --prefetch-model no mount above
	mount_fresh
	mount_files
	"$PY" "$HELPER" direct "${MNTF[@]}" >/dev/null
	out="$(load_hub "$MNT")"
	record load_mount_decoded_s "$(json seconds "$out")"
done
unmount

"$PY" - "$RESULTS" "$TOTAL" "$CAN_DROP" "$(nproc)" <<'EOF'
import statistics, sys, platform
res = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    res.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in res.items()}
total, can_drop, cores = int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
cpu = "?"
for l in open("/proc/cpuinfo"):
    if l.startswith("model name"):
        cpu = l.split(":", 1)[1].strip()
        break
print(f"\nmodelfs mount benchmark: all-MiniLM-L6-v2 bf16, {total/1e6:.1f} MB "
      f"in the model; store {med['store_bytes']/1e6:.1f} MB on disk "
      f"(ratio {total/med['store_bytes']:.2f}); zstd -3: {med['zstd_bytes']/1e6:.1f} MB")
import os
print(f"machine: {cpu}, {cores} cores; median of {len(res['cold_mbs'])} runs each "
      f"(page cache and warm re-read: {len(res['warm_ratio'])} interleaved pairs); "
      f"load average at the end {os.getloadavg()[0]:.1f} (other work on the machine "
      f"shows up in every figure)\n")
rows = [
    ("originals, page cache", med["page_mbs"]),
    ("zstd -dc (level 3)", med["zstd_mbs"]),
    ("zstd -dc (level 3), cold input", med["zstd_cold_mbs"]),
    ("mount, cold" + ("" if can_drop else " (no drop_caches: not root)"), med["cold_mbs"]),
    ("mount, fresh (store cached)", med["fresh_mbs"]),
    ("mount, warm re-read", med["warm_mbs"]),
]
print(f"{'read of every file':34s} {'MB/s':>9s} {'vs page cache':>14s} {'vs zstd -dc':>12s}")
for name, v in rows:
    print(f"{name:34s} {v:9.0f} {v/med['page_mbs']:13.2f}x {v/med['zstd_mbs']:11.2f}x")
lp, lc, lm = med["load_plain_s"], med["load_cache_s"], med["load_mount_s"]
print(f"\n{'from_pretrained (median of %d)' % len(res['load_plain_s']):34s} {'seconds':>9s}")
print(f"{'plain folder (path, page cache)':34s} {lp:9.3f}")
print(f"{'plain HF cache on disk (repo id)':34s} {lc:9.3f}   {lc/lp:.2f}x the folder")
print(f"{'fresh mount (HF_HUB_CACHE, repo id)':34s} {lm:9.3f}   {lm/lp:.2f}x the folder, "
      f"{lm/lc:.2f}x the on-disk cache")
ln = med["load_mount_nopm_s"]
print(f"{'fresh mount, prefetch_model off':34s} {ln:9.3f}   {ln/lp:.2f}x the folder "
      f"(decoding from the config.json read saves {1e3 * (ln - lm):.0f} ms)")
lw = med["load_mount_warm_s"]
print(f"{'same mount again (page cache warm)':34s} {lw:9.3f}   {lw/lp:.2f}x the folder")
ld = med["load_mount_decoded_s"]
print(f"{'fresh mount, chunks decoded before':34s} {ld:9.3f}   {ld/lp:.2f}x the folder "
      f"(the decode costs a load that waits for it {1e3 * (ln - ld):.0f} ms)")
cp, cc, cm = med["load_plain_cpu"], med["load_cache_cpu"], med["load_mount_cpu"]
print(f"{'CPU s, folder (python)':34s} {cp:9.3f}")
print(f"{'CPU s, on-disk cache (python)':34s} {cc:9.3f}   {cc/cp:.2f}x the folder")
print(f"{'CPU s, mount (python + daemon)':34s} {cm:9.3f}   {cm/cp:.2f}x the folder")
print(f"\nmount daemon CPU for a cold read of everything: {med['cold_daemon_cpu']:.3f} s "
      f"({total / 1e6 / max(med['cold_daemon_cpu'], 1e-3):.0f} MB per CPU-second)")
print(f"mount daemon for a fresh read of everything: {med['fresh_daemon_cpu']:.3f} CPU s, "
      f"{med['fresh_daemon_minflt']:.0f} page faults ({total / 4096:.0f} pages read)")
print("\ntargets (cold read against zstd -dc like for like: both inputs in the page cache,")
print("then both inputs dropped from it):")
print(f"  fresh mount read faster than zstd -dc:     "
      f"{'yes' if med['fresh_mbs'] > med['zstd_mbs'] else 'NO'} "
      f"({med['fresh_mbs']:.0f} vs {med['zstd_mbs']:.0f} MB/s, {med['fresh_mbs'] / med['zstd_mbs']:.2f}x)")
if can_drop:
    print(f"  cold mount read faster than cold zstd -dc: "
          f"{'yes' if med['cold_mbs'] > med['zstd_cold_mbs'] else 'NO'} "
          f"({med['cold_mbs']:.0f} vs {med['zstd_cold_mbs']:.0f} MB/s, "
          f"{med['cold_mbs'] / med['zstd_cold_mbs']:.2f}x)")
wq = statistics.quantiles(res["warm_ratio"], n=4)
print(f"  warm re-read within 1.5x of page cache:    "
      f"{'yes' if med['warm_ratio'] <= 1.5 else 'NO'} "
      f"({med['warm_ratio']:.2f}x slower: median of the per-pair ratios; "
      f"quartiles {wq[0]:.2f}x-{wq[2]:.2f}x)")
print(f"  from_pretrained within 1.3x of the folder: "
      f"{'yes' if lm / lp <= 1.3 else 'NO'} ({lm / lp:.2f}x; "
      f"{lm / lc:.2f}x the same layout on disk)")
EOF
