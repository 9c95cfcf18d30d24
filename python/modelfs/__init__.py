"""modelfs: load models straight from a modelfs store, with safetensors' API.

    import modelfs
    tensors = modelfs.load_file("sentence-transformers/all-MiniLM-L6-v2")
    with modelfs.safe_open("org/name", framework="pt", revision="main") as f:
        w = f.get_tensor("lm_head.weight")
        rows = f.get_slice("embed.weight")[1000:2000]

The store is read directly (no mount, no FUSE): each tensor's chunks are
decoded on every core straight into the tensor's memory and checked against
their checksums. ``modelfs.Store`` lists repos, refs, snapshots and files and
opens any file of a snapshot. Errors are exceptions carrying libmodelfs's
message (``RepositoryNotFoundError``, ``RevisionNotFoundError``,
``EntryNotFoundError``, ``TensorNotFoundError``, ``CorruptDataError``, ...,
all ``ModelfsError``). Importing needs numpy only; framework="pt" imports torch.
The ``modelfs`` command comes with the package.
"""

from ._api import load_file, safe_open
from ._lib import (CorruptDataError, DeviceUnavailableError, EntryNotFoundError, File,
                   FileInfo, FormatError,
                   InvalidArgumentError, ModelfsError, RepositoryNotFoundError,
                   RevisionNotFoundError, Store, StoreBusyError, StoreNotFoundError,
                   StoreVersionError, TensorInfo, TensorNotFoundError, default_store_dir,
                   library_version)

__version__ = "0.1.0"

__all__ = [
    "safe_open", "load_file", "Store", "File", "FileInfo", "TensorInfo",
    "default_store_dir", "library_version", "ModelfsError", "InvalidArgumentError",
    "StoreNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
    "EntryNotFoundError", "TensorNotFoundError", "CorruptDataError", "FormatError",
    "StoreBusyError", "StoreVersionError", "DeviceUnavailableError",
]
