"""File digests shared by training manifests, export packages and serving's verification."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    return sha256_digest(path).hexdigest()


def sha256_digest(path: str | Path, size: int | None = None):
    """The running sha256 of a file's first ``size`` bytes (all of it for None), to check or to go on hashing."""
    digest, left = hashlib.sha256(), size
    with open(path, "rb") as handle:
        while left is None or left > 0:
            block = handle.read(1 << 20 if left is None else min(left, 1 << 20))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest
