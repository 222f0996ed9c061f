"""DDP and FSDP2 with a parametrized model: two CPU processes (gloo), one training step each way.

Each worker computes the single-process step on the full global batch itself (same seeds, float64), then the
same step under DDP and under FSDP2 (``fully_shard``) with half the batch per rank, parametrizing before and
after wrapping/sharding, and checks every parameter against the single-process result. The model is the
Structure-declared nanoGPT (forward hooks, a tied embedding), the case most likely to break under wrappers.
"""

import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import deeplimit as dl
from spawn_helpers import spawn_ranks

if not dist.is_available():  # pragma: no cover
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

WORLD, LR, BATCH = 2, 3e-3, 8
# FSDP2 (torch.distributed.fsdp.fully_shard) is public from torch 2.6, but its CPU path (gloo) needs 2.7+:
# torch 2.6 fails inside all-gather with "'Stream' object has no attribute 'record_event'"
FSDP2_ON_CPU = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 7)
PLAN = dict(base_width=16, base_depth=1, optimizer="adamw", output_mult=2.0)


def _model(seed=0):
    import nanogpt

    model = nanogpt.build(seed, n_embd=32, n_layer=2, block_size=8, vocab_size=32).double()
    return model


def _batch():
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 32, (BATCH, 8), generator=g)
    return x, x.roll(-1, dims=1)


def _step(model, plan, x, y):
    opt = dl.make_optimizer(model, plan, LR, weight_decay=0.1)
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    return loss.detach()


def _full(p):
    return p.full_tensor() if hasattr(p, "full_tensor") else p


def _check(name, model, ref, rank):
    got = {n.removeprefix("module."): _full(p.detach()) for n, p in model.named_parameters()}
    assert got.keys() == ref.keys(), (name, sorted(got.keys() ^ ref.keys())[:4])
    for n, p in got.items():
        if not torch.allclose(p, ref[n], rtol=1e-10, atol=1e-12):
            raise AssertionError(f"rank {rank} {name}: {n} differs by {(p - ref[n]).abs().max().item():.3g}")


def _worker(rank, world, store, out, parts):
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
        x, y = _batch()
        mine = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        ref = _model()
        plan = dl.parametrize(ref, "completep", **PLAN)
        _step(ref, plan, x, y)
        expected = {n: p.detach().clone() for n, p in ref.named_parameters()}

        for name in parts:  # each part leaves its own pass mark, so each test below reads only its own
            if name == "ddp":  # parametrize then wrap, and wrap then parametrize
                _ddp(rank, expected, x[mine], y[mine])
            else:  # FSDP2: parametrize then shard, and shard then parametrize
                _fsdp2(rank, world, expected, x[mine], y[mine])
            Path(out, f"passed-{name}-{rank}").write_text("ok")
        Path(out, f"ok{rank}").write_text("ok")
        dist.barrier()  # neither rank tears gloo down while the other may still be in a collective
    except BaseException:
        Path(out, f"error{rank}").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _ddp(rank, expected, x, y):
    from torch.nn.parallel import DistributedDataParallel as DDP

    m = _model()
    plan = dl.parametrize(m, "completep", **PLAN)
    _step(DDP(m), plan, x, y)
    _check("DDP parametrize-then-wrap", m, expected, rank)
    ddp = DDP(_model())
    plan = dl.parametrize(ddp, "completep", **PLAN)
    _step(ddp, plan, x, y)
    _check("DDP wrap-then-parametrize", ddp, expected, rank)


def _fsdp2(rank, world, expected, x, y):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))

    def shard(model):
        for block in model.transformer.h:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    m = _model()
    plan = dl.parametrize(m, "completep", **PLAN)
    shard(m)
    assert type(next(m.parameters())).__name__ == "DTensor"
    _step(m, plan, x, y)
    _check("FSDP2 parametrize-then-shard", m, expected, rank)
    m = shard(_model())
    plan = dl.parametrize(m, "completep", **PLAN)
    _step(m, plan, x, y)
    _check("FSDP2 shard-then-parametrize", m, expected, rank)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One pair of ranks runs both parts (DDP, then FSDP2 where torch has it on CPU): each spawn starts two
    interpreters that import torch, which cost as much as the checks themselves. A failing part fails the spawn
    with its rank's traceback, naming the part ("DDP …" or "FSDP2 …")."""
    out = tmp_path_factory.mktemp("ranks")
    parts = ("ddp", "fsdp2") if FSDP2_ON_CPU else ("ddp",)
    spawn_ranks(_worker, (WORLD, out / "store", out, parts), out, WORLD)
    return out


def _passed(out, part):
    assert sorted(p.name for p in out.glob(f"passed-{part}-*")) == [f"passed-{part}-{r}" for r in range(WORLD)]


def test_ddp_step_matches_the_single_process_step(ranks):
    _passed(ranks, "ddp")


@pytest.mark.skipif(not FSDP2_ON_CPU, reason="FSDP2 on CPU (gloo) needs torch >= 2.7")
def test_fsdp2_step_matches_the_single_process_step(ranks):
    _passed(ranks, "fsdp2")
