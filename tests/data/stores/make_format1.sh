#!/usr/bin/env bash
# make_format1.sh - regenerate the format-1 fixture store (tests/e2e/test_upgrade.py).
#
# Writes, next to this script:
#   format1.tar.zst        data.mdb of a store written and compacted by the last
#                          release that keeps chunk payloads inside LMDB values
#                          (store format 1, commit FORMAT1_COMMIT below)
#   format1.manifest.json  every repo's refs and every snapshot's files (path,
#                          size, etag, sha256 as served) with their tensors'
#                          codecs; the chunk count verify reports
#
# What is in it (tests/data/stores/format1_models.py builds the folders from
# the fixture models of tests/e2e/fixtures.py, real weights copied byte for
# byte): MiniLM layer-0 attention tensors in F32 (64 KiB chunks, so a tensor
# spans several chunks) with a second commit under ref v2; the same tensors of
# a real fine-tune as xor-deltas against them; the BF16 tensors from a Hugging
# Face cache layout, paired with their int8 twin (quant-residual chunks
# referencing the twin's codes); config, tokenizer and vocab files shared by
# several repos (chunks with several users); a repo ingested, removed and
# swept by gc; a fine-tune's deltas whose base repo was removed (its chunks
# live on as their references only: chunks no file uses); then
# `gc --compact`. About 5 MB.
#
# Usage: tests/data/stores/make_format1.sh
#   MODELFS_OLD=/path/to/modelfs   a release binary of FORMAT1_COMMIT (else the
#                                  script builds one from `git archive` of that
#                                  commit in a temporary folder: cmake, a C
#                                  compiler and the build dependencies of ./run deps)
#   PYTHON=...                     default .venv/bin/python (the fixture models
#                                  are built by it when missing: ./run deps first)
#   OUT=DIR                        write the two files there instead (a trial run)
#
# Regenerating changes the committed files (commit times and the LMDB layout
# differ run to run); the test reads whatever the manifest says, so commit both.
set -euo pipefail

FORMAT1_COMMIT=dadbabc  # the last commit whose store format is 1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="${OUT:-$HERE}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mfs-format1.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log() { printf '[make_format1] %s\n' "$*" >&2; }

OLD="${MODELFS_OLD:-}"
if [ -z "$OLD" ]; then
    log "building the format-1 release ($FORMAT1_COMMIT) in $WORK/src"
    mkdir -p "$WORK/src"
    git -C "$ROOT" archive "$FORMAT1_COMMIT" | tar -x -C "$WORK/src"
    cmake -S "$WORK/src" -B "$WORK/src/build" -DCMAKE_BUILD_TYPE=Release \
        -DMODELFS_CUDA=OFF >"$WORK/configure.log" 2>&1 ||
        { cat "$WORK/configure.log" >&2; exit 1; }
    cmake --build "$WORK/src/build" -j "$(nproc)" --target modelfs >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; exit 1; }
    OLD="$WORK/src/build/tools/modelfs"
fi
[ -x "$OLD" ] || { log "no binary at $OLD"; exit 1; }

M="$WORK/models"
S="$WORK/store"
log "models: $M"
"$PY" "$HERE/format1_models.py" models "$M"

mfs() { "$OLD" --store "$S" "$@"; }
BF16_REPO=sentence-transformers/all-MiniLM-L6-v2
log "ingesting with $OLD"
mfs ingest "$M/f32" --repo minilm/f32 --chunk-size 64K --no-base --no-twin --quiet
mfs ingest "$M/ft-f32" --repo minilm/ft-f32 --chunk-size 64K --base minilm/f32 --quiet
mfs ingest "$M/f32-v2" --repo minilm/f32 --ref v2 --chunk-size 64K --no-base --no-twin --quiet
mfs ingest "$M/hf-cache" --no-base --quiet
mfs ingest "$M/int8" --repo minilm/int8 --quantized-of "$BF16_REPO" --no-base --quiet
mfs ingest "$M/gone" --repo scratch/gone --chunk-size 64K --no-base --no-twin --quiet
mfs ingest "$M/l1-base" --repo scratch/l1-base --no-base --no-twin --quiet
mfs ingest "$M/l1-ft" --repo minilm/ft-bf16-l1 --base scratch/l1-base --no-twin --quiet
mfs rm scratch/gone
mfs rm scratch/l1-base
mfs gc
mfs gc --compact
mfs ls

log "manifest"
"$PY" "$HERE/format1_models.py" manifest "$OLD" "$S" "$M" "$WORK/manifest.json"

# Only data.mdb: lock.mdb and the *.lock files are made again by whoever opens it.
tar --zstd -c -f "$WORK/format1.tar.zst" -C "$S" --sort=name --mtime=@0 --owner=0 \
    --group=0 --numeric-owner data.mdb
mkdir -p "$OUT"
mv "$WORK/format1.tar.zst" "$OUT/format1.tar.zst"
mv "$WORK/manifest.json" "$OUT/format1.manifest.json"
log "wrote $OUT/format1.tar.zst ($(stat -c %s "$OUT/format1.tar.zst") bytes) and format1.manifest.json"
