"""Training-framework recipes: the Hugging Face ``Trainer`` and Lightning run the plan's optimizer and a schedule
that keeps its per-group LR factors (issue 21 item 8).

Each recipe is the code ``docs/hf.md`` shows, run for a few steps on a tiny model. A pre-step hook on the
optimizer records the LR of every parameter at every step — what ``torch.optim`` actually uses — and the test
checks it against ``base(t) · lr_scale`` from the plan, where ``base(t)`` is the same torch scheduler run on a
plain one-group optimizer. The steps must also change the weights (the framework really stepped that optimizer).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as S

import deeplimit as dl

STEPS, BASE_LR = 4, 2e-3


def _base_schedule(factory, steps=STEPS):
    """The base LR at each of ``steps`` optimizer steps: ``factory`` on a one-group optimizer, stepped as usual."""
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    sched = factory(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _record_lrs(optimizer):
    """Per step: parameter id → the LR its group has when ``optimizer.step`` runs."""
    seen = []

    def hook(opt, args, kwargs):
        seen.append({id(p): g["lr"] for g in opt.param_groups for p in g["params"]})

    optimizer.register_step_pre_hook(hook)
    return seen


def _check(seen, model, plan, base):
    assert len(seen) == len(base), (len(seen), len(base))
    scales = {pp.lr_scale for pp in plan.params.values()}
    assert len(scales) > 1, "a test of per-group factors needs more than one factor"
    for t, (lrs, b) in enumerate(zip(seen, base, strict=True)):
        for name, p in model.named_parameters():
            want = b * plan[name].lr_scale
            assert math.isclose(lrs[id(p)], want, rel_tol=1e-9), (t, name, lrs[id(p)], want)


def _onecycle(opt):
    return S.OneCycleLR(opt, max_lr=BASE_LR, total_steps=STEPS, pct_start=0.5)


# --- Hugging Face Trainer ----------------------------------------------------------------------------------------
def test_hf_trainer_uses_the_plan_optimizer_and_keeps_factors(tmp_path):
    pytest.importorskip("accelerate")
    transformers = pytest.importorskip("transformers")

    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=64, max_position_embeddings=16,
                                   tie_word_embeddings=True)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    plan = dl.parametrize(model, "completep", base_width=32, base_depth=1, optimizer="adamw")
    opt = dl.make_optimizer(model, plan, lr=BASE_LR, weight_decay=0.1)
    sched = dl.scheduler(opt, _onecycle)
    seen = _record_lrs(opt)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (STEPS * 2, 16), generator=g)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=STEPS,
                                          use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
                                          disable_tqdm=True, dataloader_num_workers=0, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, sched))
    trainer.train()

    _check(seen, model, plan, _base_schedule(_onecycle))
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)


# --- Lightning ---------------------------------------------------------------------------------------------------
def _lightning_module(L, optimizer):
    class Net(L.LightningModule):
        """The recipe: parametrize the model it holds, return the plan's optimizer and dl.scheduler."""

        def __init__(self):
            super().__init__()
            self.net = dl.MLPResNet(d_in=8, d_out=4, width=32, depth=2)
            self.plan = dl.parametrize(self.net, "depth_mup", base_width=16, base_depth=1, optimizer=optimizer)
            self.seen = []

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            opt = dl.make_optimizer(self, self.plan, lr=BASE_LR)  # `self`: the plan's names are found in self.net
            self.seen = _record_lrs(opt)
            sched = dl.scheduler(opt, _onecycle)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return Net()


@pytest.mark.parametrize("optimizer", ["adam", "muon"])
def test_lightning_configure_optimizers_keeps_factors(tmp_path, optimizer):
    L = pytest.importorskip("lightning")

    torch.manual_seed(0)
    module = _lightning_module(L, optimizer)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    data = torch.utils.data.TensorDataset(torch.randn(STEPS * 4, 8), torch.randint(0, 4, (STEPS * 4,)))
    trainer = L.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))

    # the plan's lr_scale is each group's whole factor (for Muon matrices torch's own factor is divided out)
    _check(module.seen, module.net, module.plan, _base_schedule(_onecycle))
    assert all(not torch.equal(before[n], p) for n, p in module.named_parameters())


def test_make_optimizer_on_a_holder_with_parameters_outside_the_plan_says_which():
    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = dl.MLPResNet(d_in=8, d_out=4, width=32, depth=2)
            self.extra = torch.nn.Linear(4, 4)

    h = Holder()
    plan = dl.parametrize(h.net, "mup", base_width=16, optimizer="adam")
    with pytest.raises(dl.DeeplimitError, match=r"submodule 'net'.*extra\.weight.*dl\.make_optimizer\(<module>\.net"):
        dl.make_optimizer(h, plan, lr=1e-3)
    h.extra.requires_grad_(False)  # frozen outside parameters need no LR
    opt = dl.make_optimizer(h, plan, lr=1e-3)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in h.net.parameters()}
