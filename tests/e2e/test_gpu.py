"""GPU decoding end to end (docs/gpu.md), on whatever machine runs it:

- `ingest --gpu-codecs` stores the float tensors of the BF16 MiniLM as rans
  (info --json), the others as before, and `verify` passes;
- a mount of that store with gpu=auto, gpu=on and gpu=off serves every file
  with the sha256 of the original; its start line says how chunks decode:
  on a machine without a usable CUDA device (or a build without CUDA) "CPU
  decode" and why, and `on` still mounts; with a device, "rans chunks
  decoded on <device>" and the stop line counts the chunks the GPU decoded;
- the library: Store.gpu() names the device or raises DeviceUnavailableError
  saying why; set_gpu("on") raises the same where there is none, "auto"
  reads the same tensors as safetensors; load_file(device="cuda") equals
  the CPU load where torch has CUDA, and is DeviceUnavailableError (saying
  torch has no CUDA) where it has none.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import fixtures
from conftest import Modelfs, json_tensors
from mount_fixtures import mounted  # noqa: F401  (fixture)

REPO = "gpu/minilm-bf16"
# a device the driver could show (the mount and library still decide)
DEVICE_NODE = Path("/dev/nvidiactl").exists()


@pytest.fixture(scope="module")
def gpu_store(tmp_path_factory, model_path):
    m = Modelfs(tmp_path_factory.mktemp("gpu") / "store")
    m.ingest(model_path("minilm-bf16"), REPO, "--gpu-codecs", "--quiet")
    return m


def test_ingest_gpu_codecs(gpu_store):
    doc = gpu_store.info_json(REPO)
    tensors = json_tensors(doc)
    floats = [t for t in tensors if t["dtype"] in ("BF16", "F16", "F32")]
    assert floats, doc
    codecs = {t["codec"] for t in floats}
    # every float tensor the choice gives bitplane-huff is rans now
    assert "bitplane-huff" not in codecs, codecs
    assert "rans" in codecs, codecs
    gpu_store.verify(REPO)


def start_line(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "serving " in ln]
    assert lines, log
    return lines[0]


@pytest.mark.parametrize("mode", ["auto", "on", "off"])
def test_mount_gpu_mode(gpu_store, model_path, mounted, mode):
    m = mounted(gpu_store, "--gpu", mode)
    snap = m.snapshot(REPO)
    assert fixtures.tree_sha256(snap) == fixtures.tree_sha256(model_path("minilm-bf16"))
    line = start_line(m.log())
    if mode == "off":
        assert "gpu off: CPU decode" in line, line
        return
    if "rans chunks decoded on" in line:
        assert DEVICE_NODE, line
        m.stop()
        counts = re.search(r"gpu: (\d+) chunks", m.log())
        assert counts and int(counts.group(1)) > 0, m.log()
        return
    # no usable GPU: one line says the CPU decodes, and why
    assert f"gpu {mode}: CPU decode: " in line, line
    why = line.split(f"gpu {mode}: CPU decode: ", 1)[1]
    assert ("no GPU decoder" in why and "CUDA" in why) or "no usable CUDA device" in why, why
    assert m.log().count("CPU decode") == 1, m.log()


# ---------------------------------------------------------------- the library

try:
    import modelfs
except ImportError as e:
    pytest.fail(f"`import modelfs` failed ({e}): install the package with "
                f"`.venv/bin/python -m pip install --no-build-isolation .`", pytrace=False)
torch = pytest.importorskip("torch")
import safetensors.torch  # noqa: E402


def same(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def library_gpu(store_dir) -> str | None:
    """The library's device for the store, or None (and why) when it has none."""
    with modelfs.Store(str(store_dir)) as st:
        try:
            return st.gpu()
        except modelfs.DeviceUnavailableError as e:
            msg = str(e)
            assert "no GPU decode for the store" in msg, msg
            assert "no GPU decoder" in msg or "no usable CUDA device" in msg, msg
            return None


def test_library_gpu_modes(gpu_store, model_path):
    want = safetensors.torch.load_file(str(model_path("minilm-bf16") / "model.safetensors"))
    dev = library_gpu(gpu_store.store)
    with modelfs.Store(str(gpu_store.store)) as st:
        if dev is None:
            with pytest.raises(modelfs.DeviceUnavailableError, match="no GPU decode"):
                st.set_gpu("on")
        else:
            st.set_gpu("on")
        st.set_gpu("auto")
        got = modelfs.load_file(REPO, store=st)
        assert list(got) == list(want)
        assert all(same(got[k], want[k]) for k in want)
        with pytest.raises(modelfs.InvalidArgumentError):
            st.set_gpu("sometimes")


def test_load_file_cuda(gpu_store, model_path):
    if not torch.cuda.is_available():
        with pytest.raises(modelfs.DeviceUnavailableError,
                           match=r"torch.cuda.is_available\(\) is False"):
            modelfs.load_file(REPO, store=str(gpu_store.store), device="cuda")
        with pytest.raises(modelfs.DeviceUnavailableError):
            modelfs.safe_open(REPO, store=str(gpu_store.store), device="cuda:0")
        return
    want = safetensors.torch.load_file(str(model_path("minilm-bf16") / "model.safetensors"))
    got = modelfs.load_file(REPO, store=str(gpu_store.store), device="cuda")
    assert list(got) == list(want)
    for k in want:
        assert got[k].device.type == "cuda"
        assert same(got[k].cpu(), want[k]), k
    with modelfs.safe_open(REPO, store=str(gpu_store.store), device="cuda") as f:
        k = f.keys()[0]
        assert same(f.get_tensor(k).cpu(), want[k])
