"""Timing helpers for tests/bench/mount.sh (one measurement per call, JSON out).

    python mount_bench.py read [--passes N] FILE...
                                              read every file N times (default 1),
                                              1 MiB at a time; MB/s over all passes
    python mount_bench.py load SRC [CONFIG_DIR]
                                              AutoModel.from_pretrained(SRC), timed
                                              after the imports (HF_HUB_CACHE etc.
                                              come from the environment); the model's
                                              module is imported with the config.json
                                              of CONFIG_DIR (default SRC), so a mount
                                              sees nothing before the clock starts
    python mount_bench.py direct FILE...      read every file with O_DIRECT (through
                                              a mount: the daemon decodes and caches
                                              every chunk, the kernel keeps no page)
"""

from __future__ import annotations

import json
import os
import sys
import time


def read_files(paths: list[str], passes: int = 1) -> dict:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for p in paths * passes:
        with open(p, "rb", buffering=0) as f:
            while True:
                n = f.readinto(view)
                if not n:
                    break
                total += n
    secs = time.perf_counter() - t0
    return {"bytes": total, "seconds": secs, "mbs": total / secs / 1e6 if secs else 0.0}


def read_direct(paths: list[str]) -> dict:
    import mmap
    buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT wants
    total = 0
    for p in paths:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
        try:
            while (n := os.readv(fd, [buf])) > 0:
                total += n
        finally:
            os.close(fd)
    return {"bytes": total}


def load(src: str, config_dir: str | None = None) -> dict:
    import torch  # noqa: F401  (imports are not part of the timing)
    from transformers import AutoConfig, AutoModel
    # import the model's module before the clock starts: only config.json is
    # read, from config_dir when given (a mount then sees its first request,
    # and starts its prefetch_model, inside the timing, as in a real load)
    config = AutoConfig.from_pretrained(config_dir or src)
    AutoModel._model_mapping[type(config)]
    t0 = time.perf_counter()
    c0 = time.process_time()
    model = AutoModel.from_pretrained(src)
    # touch every weight, so lazily mapped pages are really read
    s = 0.0
    for p in model.parameters():
        s += float(p.detach().float().sum())
    secs = time.perf_counter() - t0
    return {"seconds": secs, "cpu": time.process_time() - c0, "checksum": s}


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "read":
        passes = 1
        if argv[1] == "--passes":
            passes, argv = int(argv[2]), argv[2:]
        print(json.dumps(read_files(argv[1:], passes)))
        return 0
    if len(argv) >= 2 and argv[0] == "direct":
        print(json.dumps(read_direct(argv[1:])))
        return 0
    if len(argv) in (2, 3) and argv[0] == "load":
        print(json.dumps(load(*argv[1:])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
