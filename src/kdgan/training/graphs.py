"""Whole training steps as CUDA graphs (config `cuda_graphs`; issue 23).

A launch-bound step, such as BigGAN-CIFAR's (thousands of small kernels per G step), runs on a
GPU at the speed the host can launch kernels, not at the speed the GPU can run them. A CUDA
graph records the kernels of a whole step once (its 4 D steps, the G step, the optimisers'
fused Adam updates, spectral norm's power iterations, DiffAugment's and the latents' random
draws) and replays them with one launch.

How a step runs here (`StepGraphs.step`):
- The step's Python decisions (`objective.branches`: lazy R1 and path length, KD every k D
  steps, LeCam's warm-up, ...) key a cache of graphs: steps with equal branches launch the same
  kernels with the same arguments, so one graph serves them all.
- The first `warmup` steps of each key run eagerly, on a side stream (cuDNN picks its
  algorithms, Adam makes its state, lazy set-ups run once); the next is captured and replayed.
- The real batches are gathered outside the graph (their positions in the epoch change every
  step) and copied into the graph's static input buffers before each replay; the loss terms come
  out in one packed tensor that is cloned after the replay. The step count and G_ema's update
  (whose decay ramps) stay outside.
- Random draws inside a graph come from torch's graph-safe generator state: a replay draws what
  an eager step at the same generator state would, but a run gathers all of a step's real
  batches (with their x-flips) before its D steps, so a graphed run is not bit-identical to an
  eager one of the same seed, and `cuda_graphs` is part of the compute setting a resume compares.

What a graph cannot hold is refused before any capture, with the reason (`blockers`): a host
read inside the step (ADA / APA move p on the host, InsGen's queue pointer, clip_on = clean's
feature cache, fp16's loss scaling, LeCam's d-updates warm-up), several processes, and
torch.compile (untested inside a capture). If a capture still fails, the run says why and goes on eagerly
(a capture launches nothing, so no training state has changed).

`capture=False` runs the same path with the graphs replaced by eager calls of the captured
function: on the CPU that is how the static buffers, the packing and the graph keys are tested.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from kdgan.training.loop import Trainer

log = logging.getLogger(__name__)

Logs = dict[str, torch.Tensor]


def blockers(trainer: Trainer) -> list[str]:
    """Why this run's step cannot be one CUDA graph, with the change that allows it; [] if it can."""
    cfg, why = trainer.cfg, []
    if trainer.device.type != "cuda":
        why.append(f"CUDA graphs need a CUDA device, not {trainer.device.type}")
    if trainer.info.world_size > 1:
        why.append("several processes: their gradient all-reduce is not captured (run one process)")
    if cfg.precision == "fp16":
        why.append("precision fp16: the loss scaler reads for infinities on the host (use bf16)")
    if cfg.ada or cfg.apa:
        why.append("ADA / APA: p moves on the host (use DiffAugment, or cuda_graphs=false)")
    if cfg.insgen:
        why.append("InsGen: its queue pointer lives on the host (cuda_graphs=false)")
    if trainer.teacher is not None and cfg.clip_on == "clean":
        why.append("clip_on=clean: its feature cache fills as images are first seen (use clip_on=augmented)")
    if getattr(trainer.objective, "lecam", None) is not None and cfg.lecam_warmup == "d-updates":
        why.append("lecam_warmup=d-updates: the warm-up reads the update count on the host "
                   "(use lecam_warmup=g-steps, the released schedule)")
    if cfg.compile:
        why.append("compile=true: torch.compile's code inside a captured step is untested, and a "
                   "recompile during a capture would fail (use compile or cuda_graphs)")
    return why


class _Graph:
    """One captured step, or with capture off the function a capture would record: replay ->
    the step's loss terms, by name."""

    def __init__(self, graph: torch.cuda.CUDAGraph | None, keys: list[str], packed: torch.Tensor | None,
                 run: Callable[[], tuple[list[str], torch.Tensor]] | None = None):
        self.graph, self.keys, self.packed, self.run = graph, keys, packed, run

    def replay(self) -> Logs:
        if self.run is not None:
            self.keys, packed = self.run()
        else:
            self.graph.replay()
            packed = self.packed
        return dict(zip(self.keys, packed.clone().unbind(0), strict=True))


class StepGraphs:
    """Runs a Trainer's steps as replays of captured CUDA graphs, one per `objective.branches`."""

    def __init__(self, trainer: Trainer, capture: bool = True, warmup: int = 2, max_graphs: int = 8):
        if warmup < 1:  # a key's first step sets things up (Adam's moments): never inside a capture
            raise ValueError(f"warmup must be at least 1, not {warmup}")
        self.t, self.capture, self.warmup, self.max_graphs = trainer, capture, warmup, max_graphs
        self.graphs: OrderedDict[Any, _Graph] = OrderedDict()
        self.seen: Counter = Counter()
        self.static: list[tuple[torch.Tensor, ...]] | None = None  # the real batches of a step
        self.side = torch.cuda.Stream(trainer.device) if capture else None
        self.failed = ""  # why a capture failed: the run then goes on eagerly
        self.pool = None  # the graphs' shared memory pool, made at the first capture
        self.replays = self.captures = self.eager_steps = 0

    def reset(self) -> None:
        """Forget every graph (they hold the optimisers' state tensors; a load replaces them), and
        their memory pool: blocks of the last capture (the gradients) may outlive the graphs, and
        torch's allocator refuses a new capture into a pool that no graph uses any more."""
        self.graphs.clear()
        self.seen.clear()
        self.pool = None

    def key(self) -> Any:
        t = self.t
        return t.objective.branches(t.step, t.cfg.d_steps)

    def step(self) -> Logs:
        t = self.t
        d0 = t.step * t.cfg.d_steps
        reals = [t.real_batch(d0 + i) for i in range(t.d_steps_per_step)]
        logs = self._run(reals)
        t.end_step()
        return logs

    def _run(self, reals: list[tuple[torch.Tensor, ...]]) -> Logs:
        """One step: eagerly after a failed capture or while its key warms up, else its graph's
        replay (captured first if it is the key's first)."""
        if self.failed:
            return self._eager(reals)
        key = self.key()
        graph = self.graphs.get(key)
        if graph is None and self.seen[key] < self.warmup:
            self.seen[key] += 1
            return self._eager(reals)
        self._fill(reals)
        graph = graph or self._capture(key)
        if graph is None:  # the capture failed: this step eagerly, from its own batches
            return self._eager(reals)
        self.graphs.move_to_end(key)
        logs = graph.replay()
        self.replays += 1
        return logs

    def _eager(self, reals: list[tuple[torch.Tensor, ...]]) -> Logs:
        """An uncaptured step (a warm-up): on a side stream on a GPU, as capture expects."""
        self.eager_steps += 1
        if self.side is None:
            return self.t.step_body(lambda i: reals[i])
        current = torch.cuda.current_stream(self.t.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            logs = self.t.step_body(lambda i: reals[i])
        current.wait_stream(self.side)
        return logs

    def _fill(self, reals: list[tuple[torch.Tensor, ...]]) -> None:
        if self.static is None or len(self.static) != len(reals):
            self.static = [tuple(x.clone() for x in batch) for batch in reals]
            return
        for buffers, batch in zip(self.static, reals, strict=True):
            for buffer, x in zip(buffers, batch, strict=True):
                buffer.copy_(x)

    def _body(self) -> tuple[list[str], torch.Tensor]:
        static = self.static
        logs = self.t.step_body(lambda i: static[i])
        return list(logs), torch.stack([v.detach().float().reshape(()) for v in logs.values()])

    def _capture(self, key: Any) -> _Graph | None:
        if not self.capture:  # as a capture, this runs nothing: the replay will
            self.captures += 1
            return self._store(key, _Graph(None, [], None, run=self._body))
        t = self.t
        optimizers = [o for o in (t.opt_G, t.opt_D, t.opt_aux) if o is not None]
        groups = [g for o in optimizers for g in o.param_groups]
        cuda_graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream(t.device)  # a failed capture can leave its own stream current
        try:
            for g in groups:  # the fused Adam kernel is the same; the flag lets step() be captured
                g["capturable"] = True
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            # one memory pool for every graph: a step's activations are dead once it is replayed
            # (what outlives a replay lives outside: parameters, optimiser state, inputs; the
            # packed output of each graph stays referenced), so the graphs of several keys take
            # the memory of one step, not one step each
            with torch.cuda.graph(cuda_graph, pool=self.pool, capture_error_mode="thread_local"):
                keys, packed = self._body()
        except Exception as e:  # noqa: BLE001 - any failure: say why, train on eagerly
            torch.cuda.set_stream(stream)
            cause = e.__context__ or e  # an op that broke the capture, then capture_end's own error
            self.failed = f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
            log.warning("cuda_graphs: capturing G step %d failed (%s); training goes on without CUDA "
                        "graphs (--set cuda_graphs=false hides this warning)", t.step, self.failed)
            self.reset()
            return None
        finally:
            for g in groups:
                g["capturable"] = False
        self.captures += 1
        log.info("cuda_graphs: captured the step of G step %d (%d graph%s)", t.step, len(self.graphs) + 1,
                 "s" * bool(self.graphs))
        return self._store(key, _Graph(cuda_graph, keys, packed))

    def _store(self, key: Any, graph: _Graph) -> _Graph:
        self.graphs[key] = graph
        while len(self.graphs) > self.max_graphs:  # the least recently replayed goes first
            self.graphs.popitem(last=False)
        return graph
