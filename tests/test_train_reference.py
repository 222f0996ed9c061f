"""The trainer's losses equal a hand-written loop over the public API, bit for bit (Adam and SGD, with warm-up).

The reference below builds the same model, plan and optimizer with ``deeplimit``'s public functions, draws the
batches with :func:`deeplimit.data.batches` (not the trainer's own batch code) and sets each step's warm-up LR
by hand, so a refactor of the trainer that changes any number (batch order, warm-up, LR factors, init) fails.
"""

import numpy as np
import pytest
import torch.nn.functional as F

import deeplimit as dl
from deeplimit.data import batches, load_image_dataset
from deeplimit.nn.registry import build_model
from deeplimit.train import TrainConfig, train

# Losses of the two runs below at commit 4fc1a1e (main, before the trainer became a package), as float.hex:
# train_loss of steps 0..7 from `train(...)` with the settings of `_cfg`. Kept as a record; the test that must
# hold everywhere is the comparison with the independent loop (other CPUs' kernels may round differently).
MAIN_4FC1A1E = {
    "adam": ["0x1.8860620000000p+0", "0x1.2b93f80000000p+0", "0x1.7697900000000p-1", "0x1.3143500000000p-1",
             "0x1.d801cc0000000p-2", "0x1.2b4b060000000p-1", "0x1.ababe00000000p-2", "0x1.7a3ee40000000p-2"],
    "sgd": ["0x1.8860620000000p+0", "0x1.e734ee0000000p-1", "0x1.0cff700000000p-1", "0x1.a77d600000000p-1",
            "0x1.31f02a0000000p-1", "0x1.77ebca0000000p-3", "0x1.0105fa0000000p-2", "0x1.6b16580000000p-6"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    r = np.random.default_rng(0)
    x = r.normal(size=(300, 10)).astype("float32")
    path = tmp_path_factory.mktemp("ref") / "tiny.npz"
    np.savez(path, x=x, y=(x[:, 0] > 0).astype("int64"))
    return str(path)


def _cfg(optimizer: str, data: str) -> TrainConfig:
    return TrainConfig(optimizer=optimizer, lr=2**-4 if optimizer == "adam" else 0.5, warmup_frac=0.5, steps=8,
                       width=8, depth=2, base_width=8, base_depth=2, batch_size=32, min_window=5, log_every=1,
                       eval_batches=0, data=data, momentum=0.9 if optimizer == "sgd" else 0.0)


def _reference_losses(cfg: TrainConfig) -> list[float]:
    x, y = load_image_dataset(cfg.data, "train")
    x = x.reshape(len(x), -1)
    model = build_model(cfg.model, width=cfg.width, depth=cfg.depth, d_in=x.shape[1], d_out=int(y.max()) + 1)
    plan = dl.parametrize(model, cfg.rule, seed=cfg.seed, optimizer=cfg.optimizer, base_width=cfg.base_width,
                          base_depth=cfg.base_depth)
    opt = dl.make_optimizer(model, plan, cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.eps, betas=cfg.betas,
                            momentum=cfg.momentum or None)
    warmup = int(cfg.warmup_frac * cfg.steps)
    per_epoch = len(x) // cfg.batch_size
    losses = []
    for t in range(cfg.steps):
        epoch, i = divmod(t, per_epoch)
        xb, yb = list(batches(x, y, cfg.batch_size, cfg.seed, epoch))[i]
        base = cfg.lr * min(1.0, (t + 1) / warmup)
        for g in opt.param_groups:
            g["lr"] = base * g["lr_scale"]
        loss = F.cross_entropy(model(xb), yb)
        losses.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return losses


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_trainer_losses_equal_an_independent_loop_bit_for_bit(optimizer, data):
    cfg = _cfg(optimizer, data)
    res = train(cfg)
    got = [r["value"] for r in res.rows if r["metric"] == "train_loss"]
    assert res.status == "ok" and len(got) == cfg.steps
    assert got == _reference_losses(cfg)
    main = [float.fromhex(h) for h in MAIN_4FC1A1E[optimizer]]
    assert got == pytest.approx(main, rel=1e-5)  # the same numbers as before the split (bit-equal on the CPU
    # that recorded them)
