"""The ``modelfs`` command of the package: runs the modelfs binary installed
inside it (modelfs/bin/modelfs), with the same arguments, in this process."""

import os
import sys
from pathlib import Path


def binary() -> Path:
    return Path(__file__).resolve().parent / "bin" / "modelfs"


def main() -> int:
    exe = binary()
    if not os.access(exe, os.X_OK):
        print(f"modelfs: the modelfs binary is not installed at {exe}: reinstall the "
              f"package (pip install . from the modelfs checkout)", file=sys.stderr)
        return 1
    os.execv(str(exe), [str(exe)] + sys.argv[1:])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
