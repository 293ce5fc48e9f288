"""Which operations make the host wait for the GPU: found by running the code on any device.

A training step that never waits for the GPU lets the host queue the next kernels while the
GPU runs the current ones; a step that waits (a `.item()`, a Python branch on a tensor, an
output whose size depends on the data) pays the launch latency of everything after it, which is
what a small network on a large GPU is bound by, and cannot be captured in a CUDA graph.
`torch.cuda.set_sync_debug_mode` reports such waits on a GPU; `HostSyncs` finds the same
operations on a CPU, so that tests without a GPU keep a step free of them.
"""

from __future__ import annotations

import collections
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Operations whose result the host must read, or whose output size depends on the data.
_ALWAYS = {
    "aten._local_scalar_dense",  # .item(), float(t), int(t), bool(t), `if t:`
    "aten.is_nonzero",
    "aten.equal",
    "aten.nonzero",
    "aten.masked_select",
    "aten._unique",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.unique_dim_consecutive",
    "aten.bincount",
    "aten.allclose",
    "aten.histc",
    # a tensor made from Python data (torch.tensor(...)): on a GPU a blocking copy from the host
    "aten.lift_fresh",
    "aten.lift_fresh_copy",
}
# Tensor methods that read the data on the host without an op the dispatcher sees on a CPU run
# (a CPU tensor's .cpu() returns itself); counted when called from outside torch.
_HOST_READS = ("tolist", "numpy", "cpu")
# Indexing with a boolean mask runs a nonzero first.
_MASK_INDEXED = {"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"}
_TORCH_DIR = str(Path(torch.__file__).parent) + "/"  # torch's own files (not torch_fidelity's)
_THIS_FILE = str(Path(__file__))


def _op_name(func: Any) -> str:
    return str(func.overloadpacket)  # e.g. aten.index (without the overload)


def _is_sync(func: Any, args: tuple, kwargs: dict) -> bool:
    name = _op_name(func)
    if name in _ALWAYS:
        return True
    if name in _MASK_INDEXED and len(args) > 1:
        return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in args[1] or ())
    if name in ("aten.masked_fill", "aten.masked_fill_"):  # a tensor fill value is read on the host
        return len(args) > 2 and isinstance(args[2], torch.Tensor)
    if name == "aten.repeat_interleave":  # without output_size the output length is data-dependent
        return isinstance(args[0], torch.Tensor) and kwargs.get("output_size") is None
    if name in ("aten._to_copy", "aten.copy_"):  # a device -> host copy (a GPU run only)
        src = args[1] if name == "aten.copy_" else args[0]
        dst = args[0].device if name == "aten.copy_" else kwargs.get("device")
        return (isinstance(src, torch.Tensor) and dst is not None and src.device.type != "cpu"
                and torch.device(dst).type == "cpu")
    return False


def _call_site(stack: traceback.StackSummary) -> str:
    """The innermost frame outside torch and this module: where the code asked for the op."""
    for frame in reversed(stack):
        if not frame.filename.startswith(_TORCH_DIR) and frame.filename != _THIS_FILE:
            parts = Path(frame.filename).parts
            short = "/".join(parts[parts.index("kdgan"):] if "kdgan" in parts else parts[-2:])
            return f"{short}:{frame.lineno} ({frame.name})"
    return "?"


def _in_torch_optim(func: Any, stack: traceback.StackSummary) -> bool:
    """Whether a host read comes from inside torch.optim (its step-count reads)."""
    optim_dir = _TORCH_DIR + "optim/"
    return (_op_name(func) == "aten._local_scalar_dense"
            and any(frame.filename.startswith(optim_dir) for frame in stack))


class HostSyncs(TorchDispatchMode):
    """Counts, while active, the operations that would make the host wait for a GPU.

    with HostSyncs() as syncs:
        trainer.train_step()
    syncs.total      # 0 for a step that never waits
    syncs.sites      # Counter of "op at file:line (function)"

    Covers reading a tensor on the host (.item(), float(), bool(), a Python `if` on a tensor,
    .tolist(), .numpy(), .cpu(), allclose), data-dependent output sizes (nonzero, unique,
    masked_select, boolean-mask indexing, repeat_interleave without output_size, bincount,
    histc), masked_fill with a tensor value, tensors made from Python data (torch.tensor(...):
    a copy from the host) and, on a GPU, copies to the host. Host-side bookkeeping on CPU
    tensors counts too, since a CPU run cannot tell it from the device's data: keep such values
    in Python numbers. Syncs hidden inside a CUDA kernel's own implementation are beyond it:
    torch.cuda.set_sync_debug_mode finds those on a GPU.
    """

    def __init__(self, optimizer_step_reads: bool = True):
        super().__init__()
        self.sites: collections.Counter[str] = collections.Counter()
        self._saved_methods: dict[str, Any] = {}
        # torch.optim's non-fused optimizers read their step counts with .item(); on CUDA those
        # counts live on the host, so the reads never wait for the GPU (False leaves them out)
        self.optimizer_step_reads = optimizer_step_reads

    def __enter__(self):
        for method in _HOST_READS:
            self._saved_methods[method] = torch.Tensor.__dict__.get(method)  # None: inherited
            setattr(torch.Tensor, method, self._counting(method, getattr(torch.Tensor, method)))
        return super().__enter__()

    def __exit__(self, *exc):
        for method, original in self._saved_methods.items():
            if original is None:
                delattr(torch.Tensor, method)
            else:
                setattr(torch.Tensor, method, original)
        self._saved_methods.clear()
        return super().__exit__(*exc)

    def _counting(self, method: str, original):
        def read(tensor, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if not caller.startswith(_TORCH_DIR):
                self.sites[f"Tensor.{method} at {_call_site(traceback.extract_stack())}"] += 1
            return original(tensor, *args, **kwargs)

        return read

    @property
    def total(self) -> int:
        return sum(self.sites.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_sync(func, args, kwargs):
            stack = traceback.extract_stack()
            if self.optimizer_step_reads or not _in_torch_optim(func, stack):
                self.sites[f"{_op_name(func)} at {_call_site(stack)}"] += 1
        return func(*args, **kwargs)

    def report(self) -> str:
        if not self.sites:
            return "no host syncs"
        return "\n".join(f"{n} x {site}" for site, n in self.sites.most_common())
