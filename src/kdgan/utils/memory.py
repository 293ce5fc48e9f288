"""What autograd keeps for the backward: a device-independent measure of a step's activation memory."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class _Held:
    """One saved tensor as the graph holds it; tells its counter when the graph lets it go."""

    __slots__ = ("tensor", "key", "counter")

    def __init__(self, tensor: torch.Tensor, key, counter: SavedTensors):
        self.tensor, self.key, self.counter = tensor, key, counter

    def __del__(self):
        self.counter._release(self.key)


class SavedTensors:
    """Counts the tensors autograd saves for the backward while active, by unique storage.

    with SavedTensors(exclude=model.parameters()) as saved:
        loss = model(x).sum()
        loss.backward()
    saved.peak    # most bytes of activations kept at once (parameters excluded)
    saved.bytes   # bytes still kept now (0 once every graph is freed)

    Peak memory of a training step sits at the end of a forward: weights, optimiser state and
    the activations kept for the backward. On a GPU torch.cuda.max_memory_allocated measures it;
    this gives the kept-activation part exactly, on any device, so that memory work can be
    checked on a CPU. Views of one storage count once, while any of them is held; a storage
    counts from the first save until the graph releases its last hold on it.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self._holds: dict[tuple[str, int], list[int]] = {}  # key -> [holds, bytes]
        self.bytes = 0
        self.peak = 0
        self.saves = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if not ptr or ptr in self._exclude:
            return t
        self.saves += 1
        key = (str(t.device), ptr)
        entry = self._holds.get(key)
        if entry is None:
            self._holds[key] = [1, storage.nbytes()]
            self.bytes += storage.nbytes()
            self.peak = max(self.peak, self.bytes)
        else:
            entry[0] += 1
        # a detached alias: holding `t` itself would tie a saved output to its own grad_fn in a
        # reference cycle that keeps the graph alive when no backward frees it; autograd restores
        # the saved tensor's gradient metadata on unpack
        return _Held(t.detach(), key, self)

    @staticmethod
    def _unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def _release(self, key) -> None:
        entry = self._holds.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.bytes -= entry[1]
            del self._holds[key]

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
