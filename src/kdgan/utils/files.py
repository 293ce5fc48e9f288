"""File permissions of what kdgan writes."""

from __future__ import annotations

import os


def as_new_file(path: str | os.PathLike) -> None:
    """Give `path` the permissions a file created here gets (0o666 less the umask). safetensors
    writes its files owner-only (0o600), which other users of a shared machine cannot read,
    while every other file kdgan writes follows the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
