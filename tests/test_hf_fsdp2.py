"""FSDP2 in either order on a Hugging Face model: ``fully_shard`` then ``dl.parametrize`` equals parametrize then
shard, and both equal the single-process model — after parametrize, after ``state_dict()`` and after one AdamW step.

Two CPU processes (gloo), float64. A tied Llama with no declarations: its structure is found by a probe forward,
which leaves the root's FSDP2 parameters gathered, and its init σ's are read off the model (``_init_weights`` on
sharded parameters) — the two places where the shard-first order went wrong (issue 21 item 5: after the first
``state_dict()`` the embedding and head were back at HF's init, and the hidden matrices were drawn from the
default σ instead of the model's ``initializer_range``). Each worker computes the single-process reference itself.
"""

import traceback
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import deeplimit as dl
from spawn_helpers import spawn_ranks

pytest.importorskip("transformers")
if not dist.is_available():  # pragma: no cover
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)
if tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 7):  # pragma: no cover
    pytest.skip("FSDP2 on CPU (gloo) needs torch >= 2.7", allow_module_level=True)

WORLD, BATCH, SEQ, VOCAB, LR = 2, 4, 8, 64, 1e-2
PLAN = dict(base_width=32, base_depth=1, optimizer="adamw")


def _model():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)  # HF's own draw: the same in every process and every order
    cfg = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=SEQ, tie_word_embeddings=True)
    return AutoModelForCausalLM.from_config(cfg).double()


def _batch():
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    return x, x.roll(-1, dims=1)


def _full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


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


def _step(model, plan, x, y):
    opt = dl.make_optimizer(model, plan, LR, weight_decay=0.1)
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


def _worker(rank, world, store, out):
    try:
        torch.set_num_threads(1)
        warnings.simplefilter("ignore")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        x, y = _batch()
        mine = slice(rank * BATCH // world, (rank + 1) * BATCH // world)

        ref = _model()
        plan = dl.parametrize(ref, "completep", **PLAN)
        at_init = _snapshot(ref)
        _step(ref, plan, x, y)
        after_step = _snapshot(ref)

        def shard(model, per_layer=True):
            for layer in model.model.layers if per_layer else ():
                fully_shard(layer, mesh=mesh)
            return fully_shard(model, mesh=mesh)

        def build(order):
            m = _model()
            if order == "parametrize then shard":
                p = dl.parametrize(m, "completep", **PLAN)
                return shard(m), p
            m = shard(m, per_layer="root only" not in order)
            if "forward" in order:
                m(x[:1])  # FSDP2 leaves the root's parameters gathered after a forward
            return m, dl.parametrize(m, "completep", **PLAN)

        for tag in ("parametrize then shard", "shard (layers + root) then parametrize",
                    "shard (root only) then parametrize", "shard, a forward, then parametrize"):
            m, p = build(tag)
            assert type(next(m.parameters())).__name__ == "DTensor", tag
            assert p.params["model.layers.0.mlp.up_proj.weight"].init_std == \
                plan.params["model.layers.0.mlp.up_proj.weight"].init_std, tag  # σ read off the sharded model
            _same(f"{tag}, at init", _snapshot(m), at_init, rank)
            _same(f"{tag}, at init after state_dict()", _snapshot(m), at_init, rank)
            _step(m, p, x[mine], y[mine])
            _same(f"{tag}, after a step", _snapshot(m), after_step, rank)
        _plain_model_after_a_forward(rank, mesh, fully_shard)
        Path(out, f"ok{rank}").write_text("ok")
        dist.barrier()  # neither rank tears gloo down while the other may still be in a collective
    except BaseException:
        Path(out, f"error{rank}").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_fsdp2_either_order_equals_the_single_process_model(tmp_path):
    spawn_ranks(_worker, (WORLD, tmp_path / "store", tmp_path), tmp_path, WORLD)
