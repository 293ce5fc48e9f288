"""Writing kdgan's safetensors files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_safetensors(tensors: dict[str, Any], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write `tensors` to `path` atomically (a hidden temporary beside it, then a rename), with the
    permissions a file created here gets (0o666 less the umask): safetensors itself writes
    owner-only files (0o600), which other users of a shared machine cannot read, while every other
    file kdgan writes follows the umask."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    tmp.replace(path)
    return path
