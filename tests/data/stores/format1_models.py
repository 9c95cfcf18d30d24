"""The small real models the format-1 fixture store is ingested from
(tests/data/stores/make_format1.sh runs this; see its header).

Each is a subset of one of the fixture models tests/e2e/fixtures.py builds
under tests/data/models/: a few tensors of its model.safetensors, copied byte
for byte (their header entries kept, offsets renumbered), and some of its
small files. Nothing is recomputed, so every tensor is real trained weights:

  f32         minilm-f32: layer 0's attention (query, key, value, output
              dense: weights and biases, the LayerNorm), F32
  ft-f32      minilm-ft-full-f32: the same tensors of a real fine-tune of it
              (stored as xor-deltas against f32)
  f32-v2      f32 with another README: a second commit of the same repo
  bf16        minilm-bf16: the same tensors, BF16 (laid out as a Hugging Face
              hub cache, so hub etags and refs are kept)
  int8        minilm-int8-channel: those tensors' int8 twin (codes, scales,
              the BF16 biases), with its config.json (quantization_config):
              the BF16 weights become quant-residuals of its codes
  gone        minilm-f32's layer 1 attention: ingested, removed, and swept by
              gc before the store is compacted (the store has had deletions)
  l1-base     minilm-bf16's layer 1 query and key weights, and
  l1-ft       minilm-ft-full-bf16's: stored as xor-deltas against l1-base,
              whose repo is then removed, so its chunks stay only as the
              deltas' references: chunks no file uses

Usage:
  python format1_models.py models OUTDIR
      writes OUTDIR/<name>/ folders, and OUTDIR/hf-cache/ for bf16
  python format1_models.py manifest MODELFS STORE MODELS OUT.json
      exports every snapshot of every repo in STORE with the binary MODELFS,
      checks each file against the folder it was ingested from (MODELS as
      written above) and against the sha256 the store records, and writes the
      manifest: per repo its refs and per snapshot every file's path, size,
      etag and sha256 as served, with its tensors' dtypes and codecs
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import fixtures  # noqa: E402

LAYER0 = [f"encoder.layer.0.attention.{t}" for t in (
    "self.query.weight", "self.query.bias", "self.key.weight", "self.key.bias",
    "self.value.weight", "self.value.bias", "output.dense.weight", "output.dense.bias",
    "output.LayerNorm.weight", "output.LayerNorm.bias")]
LAYER1 = [n.replace("layer.0.", "layer.1.") for n in LAYER0]
L1_QK = [f"encoder.layer.1.attention.self.{t}.weight" for t in ("query", "key")]
SMALL_FILES = ["config.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.txt", "tokenizer.json", "README.md", "modules.json",
               "1_Pooling/config.json"]


def read_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def subset_safetensors(src: Path, dst: Path, wanted: list[str]):
    """dst holds the tensors of src whose names are in wanted, in src's order
    of data offsets, each byte-identical; a name src lacks is an error."""
    header, base = read_header(src)
    names = [k for k in header if k != "__metadata__" and k in wanted]
    missing = set(wanted) - set(names)
    if missing:
        raise SystemExit(f"{src}: no tensor {sorted(missing)}")
    names.sort(key=lambda k: header[k]["data_offsets"][0])
    out_header, blobs, off = {}, [], 0
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    with open(src, "rb") as f:
        for k in names:
            a, b = header[k]["data_offsets"]
            f.seek(base + a)
            data = f.read(b - a)
            out_header[k] = {"dtype": header[k]["dtype"], "shape": header[k]["shape"],
                             "data_offsets": [off, off + len(data)]}
            blobs.append(data)
            off += len(data)
    hj = json.dumps(out_header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for d in blobs:
            f.write(d)


def make(name: str, model: str, out: Path, tensors: list[str], files=SMALL_FILES) -> Path:
    src = fixtures.model(model)
    d = out / name
    d.mkdir(parents=True)
    subset_safetensors(src / "model.safetensors", d / "model.safetensors", tensors)
    for rel in files:
        if (src / rel).is_file():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, d / rel)
    return d


def int8_names(header: dict) -> list[str]:
    """The int8 twin's tensors that stand for LAYER0: codes, scales, the rest."""
    out = []
    for n in LAYER0:
        out.append(n)
        if n + "_scale" in header:
            out.append(n + "_scale")
    return out


def make_models(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    make("f32", "minilm-f32", out, LAYER0)
    make("ft-f32", "minilm-ft-full-f32", out, LAYER0)
    v2 = make("f32-v2", "minilm-f32", out, LAYER0)
    (v2 / "README.md").write_text((v2 / "README.md").read_text() +
                                  "\nRevision 2 of the format-1 fixture: only this file differs.\n")
    bf16 = make("bf16", "minilm-bf16", out, LAYER0)
    fixtures.hf_cache(bf16, fixtures.MINILM_REPO, out / "hf-cache")
    q = fixtures.model("minilm-int8-channel")
    header, _ = read_header(q / "model.safetensors")
    make("int8", "minilm-int8-channel", out, int8_names(header),
         files=["config.json", "tokenizer_config.json", "vocab.txt"])
    make("gone", "minilm-f32", out, LAYER1, files=["config.json"])
    make("l1-base", "minilm-bf16", out, L1_QK, files=["config.json"])
    make("l1-ft", "minilm-ft-full-bf16", out, L1_QK, files=["config.json", "README.md"])


# Which source folder each snapshot was ingested from (make_format1.sh's
# ingests): repo -> {ref: folder name under MODELS}.
SOURCES = {
    "models/minilm/f32": {"main": "f32", "v2": "f32-v2"},
    "models/minilm/ft-f32": {"main": "ft-f32"},
    "models/minilm/int8": {"main": "int8"},
    "models/" + fixtures.MINILM_REPO: {"main": "bf16"},
    "models/minilm/ft-bf16-l1": {"main": "l1-ft"},
}


def modelfs_json(binary: str, store: Path, *args):
    res = subprocess.run([binary, "--store", str(store), *args], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"modelfs {' '.join(args)} failed:\n{res.stderr}")
    return json.loads(res.stdout)


def make_manifest(binary: str, store: Path, models: Path, out: Path):
    manifest = {"format": 1, "repos": {}}
    codecs: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repo, refs in SOURCES.items():
            entry = {"refs": {}, "snapshots": {}}
            for ref, folder in refs.items():
                info = modelfs_json(binary, store, "info", repo, "--rev", ref, "--json")
                commit = info["commit"]
                entry["refs"][ref] = commit
                dest = Path(tmp) / f"{repo.replace('/', '_')}@{ref}"
                subprocess.run([binary, "--store", str(store), "export", repo, str(dest),
                                "--rev", commit], check=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL)
                src = fixtures.tree_sha256(models / folder)
                got = fixtures.tree_sha256(dest)
                if src != got:
                    raise SystemExit(f"{repo}@{ref}: the export differs from {models / folder}")
                files = {}
                for f in info["files"]:
                    if f["sha256"] != got[f["path"]]:
                        raise SystemExit(f"{repo}@{ref}: {f['path']}: recorded sha256 differs")
                    files[f["path"]] = {"size": f["size"], "etag": f["etag"],
                                        "sha256": f["sha256"]}
                    tensors = {t["name"]: {"dtype": t["dtype"], "codec": t["codec"]}
                               for t in f["tensors"]}
                    if tensors:
                        files[f["path"]]["tensors"] = tensors
                    for t in tensors.values():
                        codecs[t["codec"]] = codecs.get(t["codec"], 0) + 1
                if set(files) != set(got):
                    raise SystemExit(f"{repo}@{ref}: info and export list other files")
                entry["snapshots"][commit] = {"files": files}
            manifest["repos"][repo] = entry
    for needed in ("xor-delta", "quant-residual"):
        if not codecs.get(needed):
            raise SystemExit(f"no tensor of the fixture is stored as {needed}")
    manifest["tensor_codecs"] = dict(sorted(codecs.items()))
    res = subprocess.run([binary, "--store", str(store), "verify", "--quiet"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)
    m = re.search(r"verified (\d+) chunks and (\d+) files", res.stdout)
    if res.returncode != 0 or not m or "0 damaged chunks, 0 damaged files" not in res.stdout:
        raise SystemExit(f"verify of {store} is not clean:\n{res.stdout}{res.stderr}")
    manifest["chunks"], manifest["files_verified"] = int(m.group(1)), int(m.group(2))
    out.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main(argv):
    if len(argv) == 3 and argv[1] == "models":
        make_models(Path(argv[2]))
    elif len(argv) == 6 and argv[1] == "manifest":
        make_manifest(argv[2], Path(argv[3]), Path(argv[4]), Path(argv[5]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
