"""Whole training steps as CUDA graphs (training/graphs.py, config cuda_graphs; issue 23).

A capture needs a GPU (tests/gpu/test_cuda.py captures and replays); here the same path runs
with each graph replaced by the function it would record, which checks what the CPU can: the
static input buffers, the packed loss terms, the warm-up count, and above all the graph keys
(`objective.branches`): two steps with equal keys must launch the same kernels with the same
arguments, else one graph would replay the wrong step.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from kdgan.config import resolve
from kdgan.training.graphs import StepGraphs
from kdgan.training.loop import Trainer
from tests.unit.test_ada import tiny_faces
from tests.unit.test_checkpoint import tiny_data

# BigGAN: LeCam's warm-up ends after G step 2 (three keys), KD on every other D step, lazy R1
BIGGAN = {"data": "in-memory", "device": "cpu", "batch_size": 10, "xflip": False,
          "diffaugment": "color,translation,cutout", "teacher": "clip-tiny-random", "kd": "agkd,cgkd",
          "kd_every": 2, "lecam_weight": 0.1, "lecam_start_steps": 2, "r1_gamma": 0.1, "r1_every": 4}
# StyleGAN2: separate lazy R1 and path length every 2 steps, KD with fitted target statistics
STYLEGAN2 = {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4, "xflip": False,
             "teacher": "clip-tiny-random", "kd": "agkd,cgkd", "prompts": "faces", "kd_target_norm": "rms"}


def trainer(preset: str, fields: dict, tmp_path, graphs: bool) -> Trainer:
    data = tiny_faces() if preset.startswith("stylegan2") else tiny_data()
    t = Trainer(resolve(preset, fields), tmp_path, dataset=data)
    if graphs:
        t.graphs = StepGraphs(t, capture=False)
    return t


def test_graph_steps_compute_what_eager_steps_compute(tmp_path):
    """Warm-up steps, 'captures' and replays through static buffers give the eager run's numbers
    bit for bit (without x-flips, whose draws a graphed run makes before its D steps)."""
    eager = trainer("tiny", BIGGAN, tmp_path / "eager", graphs=False)
    logs = [eager.train_step() for _ in range(9)]  # one trainer at a time: they share torch's RNG
    graphed = trainer("tiny", BIGGAN, tmp_path / "graphed", graphs=True)
    for step in range(9):
        a, b = logs[step], graphed.train_step()
        assert list(a) == list(b), step
        for k in a:
            assert torch.equal(a[k].float(), b[k]), (step, k)
    for name in ("G", "D", "G_ema"):
        for (n, p), q in zip(getattr(eager, name).state_dict().items(),
                             getattr(graphed, name).state_dict().values(), strict=True):
            assert torch.equal(p, q), (name, n)
    g = graphed.graphs
    assert g.replays > 0 and g.captures >= 2 and g.eager_steps + g.replays == 9


class OpLog(TorchDispatchMode):
    """Every operation with its arguments: tensors by shape, dtype and layout, the rest by value."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        def describe(x):
            if isinstance(x, torch.Tensor):
                return ("T", tuple(x.shape), str(x.dtype), x.is_contiguous())
            if x is None or isinstance(x, (bool, int, float, str, torch.dtype, torch.device, torch.layout,
                                            torch.memory_format)):
                return x
            return type(x).__name__  # e.g. a profiler record's handle: no kernel argument

        if not str(func).startswith("profiler."):
            self.ops.append(f"{func} {tree_map(describe, (args, kwargs or {}))}")
        return func(*args, **(kwargs or {}))


def ops_by_step(t: Trainer, steps: int) -> list[tuple[object, list[str]]]:
    """(graph key, the operations of its step body) of `steps` steps."""
    body, out = t.step_body, []

    def logged(reals):
        with OpLog() as oplog:
            logs = body(reals)
        out[-1][1].extend(oplog.ops)
        return logs

    t.step_body = logged
    for _ in range(steps):
        out.append((t.graphs.key(), []))
        t.train_step()
    return out


def check_keys(runs: list[tuple[object, list[str]]], min_keys: int) -> None:
    """Steps with equal keys ran equal operations. The run's first step is left out: it sets
    things up once (Adam's moments, fitted statistics), and a key's first step never runs as a
    graph (StepGraphs warms each key up eagerly)."""
    by_key: dict[object, list[str]] = {}
    for step, (key, ops) in enumerate(runs[1:], start=1):
        assert ops, step
        first = by_key.setdefault(key, ops)
        if first != ops:
            at = next(i for i, (x, y) in enumerate(zip(first, ops, strict=False)) if x != y)
            raise AssertionError(f"step {step} has the key of an earlier step but runs other operations "
                                 f"(first difference, op {at}: {first[at]} vs {ops[at]})")
    assert len(by_key) >= min_keys, list(by_key)
    assert len(by_key) < len(runs) - 1, "no key repeats: nothing was compared"


PLAIN = {"data": "in-memory", "device": "cpu", "batch_size": 10, "xflip": False}


@pytest.mark.parametrize("fields,steps,min_keys", [
    ({"r1_gamma": 0.1, "r1_every": 3}, 7, 3),  # lazy R1 on every 3rd of 2 D steps per G step
    ({"r1_gamma": 0.1, "r1_every": 3, "lazy_reg": "fused"}, 7, 3),  # the same inside the D step
    ({"teacher": "clip-tiny-random", "kd": "agkd,cgkd", "kd_every": 3}, 7, 3),  # KD likewise
    ({"lecam_weight": 0.1, "lecam_start_steps": 2}, 6, 3),  # warming (decay 0), decay 0.9 off, on
    ({"vision_aided": "clip-tiny-random", "vision_aided_warmup": 2}, 6, 2),  # its loss on after G step 2
], ids=["lazy-r1", "lazy-r1-fused", "kd-every", "lecam-warm-up", "vision-aided-warm-up"])
def test_steps_with_equal_keys_run_the_same_operations_biggan(tmp_path, fields, steps, min_keys):
    t = trainer("tiny", {**PLAIN, **fields}, tmp_path, graphs=True)
    check_keys(ops_by_step(t, steps), min_keys=min_keys)


def test_steps_with_equal_keys_run_the_same_operations_stylegan2(tmp_path):
    t = trainer("stylegan2-tiny", {**STYLEGAN2, "pl_every": 3}, tmp_path, graphs=True)
    check_keys(ops_by_step(t, 7), min_keys=4)  # separate R1 every 2, path length every 3


def test_a_changed_constant_changes_the_key(tmp_path):
    """The keys must tell apart steps whose kernels differ only in a baked-in constant (LeCam's
    anchors copy the batch means during warm-up, decay 0, then move with decay 0.9)."""
    t = trainer("tiny", BIGGAN, tmp_path, graphs=True)
    runs = ops_by_step(t, 4)
    warming, after = runs[1], runs[3]  # G steps 1 and 3: LeCam warming, then active
    assert warming[0] != after[0]
    assert warming[1] != after[1]


def test_runs_that_cannot_be_captured_say_why_and_train_eagerly(tmp_path, caplog):
    fields = {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4, "ada": "bgc",
              "insgen": True, "precision": "fp16", "compile": True, "cuda_graphs": True}
    with caplog.at_level(logging.WARNING):
        t = Trainer(resolve("stylegan2-tiny", fields), tmp_path, dataset=tiny_faces())
    assert t.graphs is None and t.compute["cuda_graphs"] is False
    text = caplog.text
    for reason in ("need a CUDA device", "ADA / APA", "InsGen", "precision fp16", "compile=true"):
        assert reason in text, text
    t.train_step()


def test_loading_a_checkpoint_forgets_the_graphs(tmp_path):
    """The graphs hold the optimisers' state tensors, which a load replaces."""
    t = trainer("tiny", PLAIN, tmp_path, graphs=True)  # one key
    t.graphs.warmup = 1  # capture at the second step
    for _ in range(3):
        t.train_step()
    assert t.graphs.graphs and t.graphs.replays == 2
    t.graphs.pool = ("pool",)
    state = t.state_dict()
    t.load_state_dict(state)
    assert not t.graphs.graphs and not t.graphs.seen and t.graphs.pool is None


class FakeStream:
    def __init__(self, *args, **kwargs):
        pass

    def wait_stream(self, other) -> None:
        pass


class FakeCUDAGraph:
    """torch.cuda.CUDAGraph on the CPU: what a capture of StepGraphs' step body records, replayed.

    A capture launches nothing: the fake runs the body, then puts back every tensor of the
    training state (and the random generator) as it was, and keeps the body's packed output
    tensor; a replay runs the body again and writes its output into that same tensor, as a
    graph's replay writes into the addresses captured."""

    owner = None  # the StepGraphs under test (its _body is wrapped to see the packed output)

    def __init__(self):
        self.packed = None
        self.capturable_seen = None

    def replay(self) -> None:
        _, packed = self.owner._body()
        self.packed.copy_(packed)


def training_state(t: Trainer) -> list[torch.Tensor]:
    tensors = [*t.G.state_dict().values(), *t.D.state_dict().values(), *t.G_ema.state_dict().values()]
    for m in t.objective.state_dict().values():
        tensors += [v for v in m.values() if isinstance(v, torch.Tensor)]
    for opt in (t.opt_G, t.opt_D, t.opt_aux):
        if opt is not None:
            tensors += [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    return tensors


class fake_capture:  # noqa: N801 - stands in for torch.cuda.graph
    fail: Exception | None = None

    def __init__(self, graph: FakeCUDAGraph, **kwargs):
        self.graph = graph

    def __enter__(self):
        t = FakeCUDAGraph.owner.t
        self.graph.capturable_seen = all(g["capturable"] for o in (t.opt_G, t.opt_D) for g in o.param_groups)
        self.state = [(x, x.clone()) for x in training_state(t)]
        self.rng = torch.get_rng_state()
        return self

    def __exit__(self, *exc) -> bool:
        for x, saved in self.state:
            x.copy_(saved)
        torch.set_rng_state(self.rng)
        if fake_capture.fail is not None:  # as on CUDA: the op's error, then capture_end's own
            try:
                raise fake_capture.fail
            except RuntimeError:
                raise RuntimeError("CUDA error: operation failed due to a previous error during capture")  # noqa: B904
        self.graph.packed = FakeCUDAGraph.owner.last[1]
        return False


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeCUDAGraph)
    monkeypatch.setattr(torch.cuda, "graph", fake_capture)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: ("pool",))
    monkeypatch.setattr(torch.cuda, "set_stream", lambda s: None)
    fake_capture.fail = None

    def install(t: Trainer) -> StepGraphs:
        g = t.graphs = StepGraphs(t, capture=True)
        body = g._body

        def spied():
            g.last = body()
            return g.last

        g._body = spied
        FakeCUDAGraph.owner = g
        return g

    return install


@pytest.mark.parametrize("preset,fields,steps", [
    ("tiny", BIGGAN, 9),  # two keys (lazy R1), captured at steps 7 and 8
    ("stylegan2-tiny", STYLEGAN2, 9),  # separate R1 and path-length steps; keys captured at 5 and 6
], ids=["biggan", "stylegan2"])
def test_the_capture_path_computes_what_eager_steps_compute(tmp_path, fake_cuda, preset, fields, steps):
    """The capture path of StepGraphs (capturable Adam, the packed output, replays into it) with
    a CPU stand-in for CUDA graphs: bit for bit the eager run's numbers."""
    eager = trainer(preset, fields, tmp_path / "eager", graphs=False)
    logs = [eager.train_step() for _ in range(steps)]
    graphed = trainer(preset, fields, tmp_path / "graphed", graphs=False)
    g = fake_cuda(graphed)
    for step in range(steps):
        a, b = logs[step], graphed.train_step()
        assert list(a) == list(b), step
        for k in a:
            assert torch.equal(a[k].float(), b[k]), (step, k)
    for name in ("G", "D", "G_ema"):
        ours, theirs = getattr(eager, name).state_dict(), getattr(graphed, name).state_dict()
        for p, q in zip(ours.values(), theirs.values(), strict=True):
            assert torch.equal(p, q), name
    assert g.captures == 2 and g.replays >= 2 and not g.failed
    graphs = list(g.graphs.values())
    assert all(x.graph.capturable_seen for x in graphs)  # Adam was capturable during the capture
    assert not any(grp["capturable"] for grp in graphed.opt_G.param_groups)  # and is not after it


def test_a_failed_capture_says_why_and_trains_on_eagerly(tmp_path, fake_cuda, caplog):
    eager = trainer("tiny", PLAIN, tmp_path / "eager", graphs=False)
    logs = [eager.train_step() for _ in range(6)]
    graphed = trainer("tiny", PLAIN, tmp_path / "graphed", graphs=False)
    g = fake_cuda(graphed)
    g.warmup = 1  # one key: the second step is captured
    fake_capture.fail = RuntimeError("operation not permitted when stream is capturing")
    with caplog.at_level(logging.WARNING):
        for step in range(6):
            b = graphed.train_step()
            for k, v in logs[step].items():
                assert torch.equal(v.float(), b[k].float()), (step, k)
    assert "operation not permitted" in g.failed and g.replays == 0 and g.eager_steps == 6
    assert "capturing G step 1 failed" in caplog.text
