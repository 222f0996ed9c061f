"""DDP and FSDP2 with a parametrized model: two CPU processes (gloo), one training step each way; and FSDP2 in
either order on a Hugging Face model.

Each worker computes the single-process step on the full global batch itself (same seeds, float64), then the
same step under DDP and under FSDP2 (``fully_shard``) with half the batch per rank, parametrizing before and
after wrapping/sharding, and checks every parameter against the single-process result. The model is the
Structure-declared nanoGPT (forward hooks, a tied embedding), the case most likely to break under wrappers.

FSDP2 on a Hugging Face model (``hf-fsdp2``): ``fully_shard`` then ``dl.parametrize`` equals parametrize then shard,
and both equal the single-process model — after parametrize, after ``state_dict()`` and after one AdamW step. A tied
Llama with no declarations, float64: its structure is found by a probe forward, which leaves the root's FSDP2
parameters gathered, and its init σ's are read off the model (``_init_weights`` on sharded parameters) — the two
places where the shard-first order went wrong (issue 21 item 5: after the first ``state_dict()`` the embedding and
head were back at HF's init, and the hidden matrices were drawn from the default σ instead of the model's
``initializer_range``). Each worker computes the single-process reference itself.

One pair of ranks runs every part: each spawn starts two interpreters that import torch (and transformers), which
cost as much as the checks themselves.
"""

import importlib.util
import sys
import traceback
import warnings
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
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


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
            elif name == "fsdp2":  # FSDP2: parametrize then shard, and shard then parametrize
                _fsdp2(rank, world, expected, x[mine], y[mine])
            else:
                _hf_fsdp2(rank, world)
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


# ---- FSDP2 on a Hugging Face model ----------------------------------------------------------------------------
HF_BATCH, HF_SEQ, HF_VOCAB, HF_LR = 4, 8, 64, 1e-2
HF_PLAN = dict(base_width=32, base_depth=1, optimizer="adamw")


def _hf_model():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)  # HF's own draw: the same in every process and every order
    cfg = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=HF_VOCAB, max_position_embeddings=HF_SEQ,
                      tie_word_embeddings=True)
    return AutoModelForCausalLM.from_config(cfg).double()


def _hf_batch():
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, HF_VOCAB, (HF_BATCH, HF_SEQ), generator=g)
    return x, x.roll(-1, dims=1)


def _snapshot(model):
    """Parameters and the state dict (every value gathered), as plain tensors."""
    params = {n: _full(p.detach()).clone() for n, p in model.named_parameters()}
    state = {k: _full(v.detach()).clone() for k, v in model.state_dict().items()}
    return params, state


def _same(tag, got, ref, rank):
    for what, a, b in zip(("parameter", "state_dict entry"), got, ref, strict=True):
        assert a.keys() == b.keys(), (tag, what, sorted(a.keys() ^ b.keys())[:4])
        for k in a:
            if not torch.allclose(a[k], b[k], rtol=1e-10, atol=1e-12):
                raise AssertionError(f"rank {rank} {tag}: {what} {k} differs by {(a[k] - b[k]).abs().max().item():.3g}"
                                     f" (std {a[k].std().item():.4g} vs {b[k].std().item():.4g})")


def _hf_step(model, plan, x, y):
    opt = dl.make_optimizer(model, plan, HF_LR, weight_decay=0.1)
    loss = F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()


def _plain_model_after_a_forward(rank, mesh, fully_shard):
    """A model with no probe: a forward the user ran before ``parametrize`` leaves the root gathered, and the
    plan's draws must still reach the shards (they survive ``state_dict()``)."""
    def mlp():
        torch.manual_seed(0)
        return dl.MLPResNet(d_in=8, d_out=4, width=32, depth=2).double()

    ref = mlp()
    dl.parametrize(ref, "depth_mup", base_width=16, base_depth=1, optimizer="adam")
    m = fully_shard(mlp(), mesh=mesh)
    m(torch.ones(2, 8, dtype=torch.float64))
    dl.parametrize(m, "depth_mup", base_width=16, base_depth=1, optimizer="adam")
    first = _snapshot(m)
    _same("plain model: shard, a forward, then parametrize", first, _snapshot(ref), rank)
    _same("plain model, after state_dict()", _snapshot(m), first, rank)


def _hf_fsdp2(rank, world):
    """FSDP2 on a tied HF Llama, in every order, against the single-process model (module doc)."""
    warnings.simplefilter("ignore")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    x, y = _hf_batch()
    mine = slice(rank * HF_BATCH // world, (rank + 1) * HF_BATCH // world)

    ref = _hf_model()
    plan = dl.parametrize(ref, "completep", **HF_PLAN)
    at_init = _snapshot(ref)
    _hf_step(ref, plan, x, y)
    after_step = _snapshot(ref)

    def shard(model, per_layer=True):
        for layer in model.model.layers if per_layer else ():
            fully_shard(layer, mesh=mesh)
        return fully_shard(model, mesh=mesh)

    def build(order):
        m = _hf_model()
        if order == "parametrize then shard":
            p = dl.parametrize(m, "completep", **HF_PLAN)
            return shard(m), p
        m = shard(m, per_layer="root only" not in order)
        if "forward" in order:
            m(x[:1])  # FSDP2 leaves the root's parameters gathered after a forward
        return m, dl.parametrize(m, "completep", **HF_PLAN)

    for tag in ("parametrize then shard", "shard (layers + root) then parametrize",
                "shard (root only) then parametrize", "shard, a forward, then parametrize"):
        m, p = build(tag)
        assert type(next(m.parameters())).__name__ == "DTensor", tag
        assert p.params["model.layers.0.mlp.up_proj.weight"].init_std == \
            plan.params["model.layers.0.mlp.up_proj.weight"].init_std, tag  # σ read off the sharded model
        _same(f"{tag}, at init", _snapshot(m), at_init, rank)
        _same(f"{tag}, at init after state_dict()", _snapshot(m), at_init, rank)
        _hf_step(m, p, x[mine], y[mine])
        _same(f"{tag}, after a step", _snapshot(m), after_step, rank)
    _plain_model_after_a_forward(rank, mesh, fully_shard)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One pair of ranks runs every part (DDP, then FSDP2 and FSDP2 on a Hugging Face model where torch has FSDP2
    on CPU and transformers is installed). A failing part fails the spawn with its rank's traceback, naming the
    part ("DDP …", "FSDP2 …" or the HF order)."""
    out = tmp_path_factory.mktemp("ranks")
    parts = ("ddp", "fsdp2", *(("hf-fsdp2",) if HAS_TRANSFORMERS else ())) if FSDP2_ON_CPU else ("ddp",)
    spawn_ranks(_worker, (WORLD, out / "store", out, parts), out, WORLD)
    return out


def _passed(out, part):
    assert sorted(p.name for p in out.glob(f"passed-{part}-*")) == [f"passed-{part}-{r}" for r in range(WORLD)]


def test_ddp_step_matches_the_single_process_step(ranks):
    _passed(ranks, "ddp")


@pytest.mark.skipif(not FSDP2_ON_CPU, reason="FSDP2 on CPU (gloo) needs torch >= 2.7")
def test_fsdp2_step_matches_the_single_process_step(ranks):
    _passed(ranks, "fsdp2")


@pytest.mark.skipif(not FSDP2_ON_CPU, reason="FSDP2 on CPU (gloo) needs torch >= 2.7")
@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (pip install -e .[hf])")
def test_hf_fsdp2_either_order_equals_the_single_process_model(ranks):
    _passed(ranks, "hf-fsdp2")
