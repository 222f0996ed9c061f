"""Coordinate checks over width *and* depth, for any model (ecosystem spec §1, §5; depth-mup spec §8.2).

Train a few steps at several (width, depth) and record, at every step t (t = 0 is init), the size of
each site's activations on a fixed batch: mean |x| (``l1``, mup's column), ``rms``, and ``delta_rms`` =
RMS(x_t − x_0) (the change from init, the statistic that separates parametrizations).

Sites are aliases that exist at every depth: ``input`` (x⁰), ``block_first`` (x¹), ``block_last`` (x^L,
the final residual stream) and ``logits``. They are found from the model's ``input``/``blocks``/``readout``
attributes (deeplimit's models), else from its :class:`~deeplimit.scaling.structure.Structure` (declared, or
found for a Hugging Face model by :func:`deeplimit.scaling.hf.structure_of`). Under a correct rule the curves
are flat in width and depth; :func:`coord_verdict` turns the slopes into a verdict.

The batch is float features/images with class labels, or int token ids: with targets ``y`` of the same shape
(next-token targets, as :class:`deeplimit.data.ByteCorpus` gives) or ``y=None`` (the loss shifts by one).
Model outputs may be a tensor, a Hugging Face ``ModelOutput`` (``.logits``), a tuple or a dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.diagnostics.coord_data import coord_data, data_for, input_kind
from deeplimit.diagnostics.coord_plot import plot_coord_check
from deeplimit.diagnostics.coord_verdict import (
    FLAT,
    SITES,
    VERDICT_SITES_DEPTH,
    CoordVerdict,
    Verdict,
    coord_verdict,
    direction,
    log2_slopes,
)
from deeplimit.errors import DeeplimitError, check_positive
from deeplimit.io import atomic_write_json, atomic_write_text, ensure_dir
from deeplimit.nn._validate import MAX_DEPTH, MAX_WIDTH, check_size
from deeplimit.scaling import hf
from deeplimit.scaling.apply import parametrize
from deeplimit.scaling.declared import get_structure
from deeplimit.scaling.optim import make_optimizer

__all__ = ["FLAT", "SITES", "VERDICT_SITES_DEPTH", "CoordCheck", "CoordVerdict", "Verdict", "call_factory",
           "coord_check", "coord_check_verdict", "coord_data", "coord_verdict", "data_for", "default_loss",
           "direction", "input_kind", "log2_slopes", "logits_of", "next_token_loss", "plot_coord_check",
           "run_coord_check"]

ModelFactory = Callable[[int, int], nn.Module]
LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
MAX_SEED = 2**32 - 1
MAX_STEPS = 10**6
MAX_BATCH = 2**20


# ----------------------------------------------------------------------------------------------------------
# Outputs and losses
# ----------------------------------------------------------------------------------------------------------
def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output: a tensor, ``.logits`` (Hugging Face), ``["logits"]`` or a tuple's first."""
    if isinstance(output, torch.Tensor):
        return output
    value = getattr(output, "logits", None)
    if value is None and isinstance(output, dict):
        value = output.get("logits")
    if value is None and isinstance(output, (tuple, list)) and output:
        value = output[0]
    if not isinstance(value, torch.Tensor):
        raise DeeplimitError(f"cannot find logits in a model output of type {type(output).__name__}; return a "
                             "tensor, an object with .logits, or pass loss_fn=(output, y) -> loss")
    return value


def default_loss(output: Any, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the logits: ``(B, C)`` vs ``(B,)`` labels, or ``(B, T, V)`` vs ``(B, T)`` token targets."""
    logits = logits_of(output)
    if logits.ndim == y.ndim + 1:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    raise DeeplimitError(f"logits of shape {tuple(logits.shape)} do not match targets of shape {tuple(y.shape)}; "
                         "give one label per example (B,) or one target per token (B, T), or pass loss_fn")


def next_token_loss(output: Any, x: torch.Tensor) -> torch.Tensor:
    """Causal-LM loss when no targets are given: logits at t predict token t + 1 of ``x``."""
    logits = logits_of(output)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1))


# ----------------------------------------------------------------------------------------------------------
# Sites
# ----------------------------------------------------------------------------------------------------------
def _first_tensor(obj: Any) -> torch.Tensor:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], torch.Tensor):
        return obj[0]
    return logits_of(obj)


def _sites(model: nn.Module) -> dict[str, tuple[nn.Module, Literal["in", "out"]]]:
    """Alias → (module, whether its input or output is recorded)."""
    if all(hasattr(model, a) for a in ("input", "blocks", "readout")):
        blocks = list(model.blocks)
        return {"input": (model.input, "out"), "block_first": (blocks[0], "out"), "block_last": (blocks[-1], "out"),
                "logits": (model.readout, "out")}
    s = get_structure(model)  # declared, or found for a Hugging Face model
    if s is None or not s.blocks:
        raise DeeplimitError(
            f"coord_check cannot find the sites of {type(model).__name__}: give it 'input', 'blocks' and 'readout' "
            "attributes (like deeplimit.MLPResNet), declare its structure with deeplimit.scaling.declare_structure, "
            "or use a Hugging Face transformers model")
    from deeplimit.scaling import canonical_name

    modules = {canonical_name(n): m for n, m in hf.unwrap(model).named_modules()}
    blocks = list(s.blocks)
    sites = {"input": (modules[blocks[0]], "in"), "block_first": (modules[blocks[0]], "out"),
             "block_last": (modules[blocks[-1]], "out")}
    if s.readouts:
        sites["logits"] = (modules[s.readouts[0]], "out")
    return sites


@torch.no_grad()
def _measure(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    acts: dict[str, torch.Tensor] = {}
    handles = []
    for site, (module, where) in _sites(model).items():
        if where == "out":
            hook = lambda _m, _i, out, k=site: acts.__setitem__(k, _first_tensor(out).detach().clone())
            handles.append(module.register_forward_hook(hook))
        else:
            def pre(_m, args, kwargs, k=site):
                h = args[0] if args else kwargs.get("hidden_states")
                acts[k] = h.detach().clone()
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    if "logits" not in acts:
        acts["logits"] = logits_of(out).detach().clone()
    return acts


def _first_measure(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`_measure`, with a model that cannot eat the batch named in one line (which input, what it eats)."""
    try:
        return _measure(model, x)
    except DeeplimitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code on our batch is reported the same way
        what = (f"token ids {tuple(x.shape)} (ids < {int(x.max()) + 1})" if not torch.is_floating_point(x)
                else f"float inputs {tuple(x.shape)}")
        raise DeeplimitError(f"{type(model).__name__} failed on the coordinate check's batch of {what} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); give "
                             f"data in the form the model eats (it looks like it eats {input_kind(model)})"
                             ) from None


def call_factory(make_model: ModelFactory, width: int, depth: int, kwargs: dict[str, Any] | None = None, *,
                 name: str | None = None) -> nn.Module:
    """``make_model(width, depth, **kwargs)``, with a one-line error naming the factory (``name``, default its
    ``__name__``) when it raises or returns no module."""
    name = name or getattr(make_model, "__name__", type(make_model).__name__)
    try:
        model = make_model(width, depth, **(kwargs or {}))
    except DeeplimitError:
        raise
    except Exception as exc:
        raise DeeplimitError(f"the model factory {name} failed at width={width}, depth={depth} "
                             f"({type(exc).__name__}: {exc}); fix the factory or choose sizes it accepts") from exc
    if not isinstance(model, nn.Module):
        raise DeeplimitError(f"the model factory {name} returned {type(model).__name__}, not an nn.Module; it must "
                             "be a callable (width, depth) -> nn.Module")
    return model


# ----------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------
def coord_check(
    make_model: ModelFactory,
    rule: str,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    widths: Sequence[int],
    depths: Sequence[int],
    base_width: int,
    base_depth: int,
    optimizer: str = "adam",
    lr: float = 2**-8,
    steps: int = 10,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 64,
    loss_fn: LossFn | None = None,
    dtype: torch.dtype = torch.float32,
    train_io: bool = True,
    **plan_kwargs,
) -> pd.DataFrame:
    """Tidy table with one row per (width, depth, seed, step, site): ``l1``, ``rms``, ``delta_rms``.

    Args:
        make_model: ``(width, depth) -> nn.Module``, a fresh model per call.
        rule, plan_kwargs: passed to :func:`deeplimit.parametrize` with the base shape and optimizer.
        x: ``(N, …)`` float inputs, or ``(N, T)`` int token ids (never cast). The first ``batch_size`` rows are
            the fixed measurement batch; training batches come from the rest (N ≥ 2·batch_size), in as many
            seeded epochs as ``steps`` needs.
        y: ``(N,)`` labels, ``(N, T)`` token targets, or ``None`` for token ids (next-token loss on ``x``).
        loss_fn: ``(output, y) -> loss``; default cross-entropy on the logits (:func:`default_loss`, or
            :func:`next_token_loss` with ``y=None``, called as ``loss_fn(output, x_batch)``).
        dtype: floating dtype of the model (and of float inputs); float64 for closed-form checks.
        train_io: ``False`` freezes the input and readout layers (TP6's depth protocol, as
            ``TrainConfig.train_io``): the change of the stream is then the blocks' alone, which is what the
            depth LR exponent acts on — a trained input layer's change (depth-independent) otherwise hides it.

    Every (width, depth) sees the same batches for a given seed.
    """
    batch_size = check_size("batch_size", batch_size, maximum=MAX_BATCH)
    steps = check_size("steps", steps, minimum=0, maximum=MAX_STEPS)
    widths = [check_size("width", w, maximum=MAX_WIDTH) for w in widths]
    depths = [check_size("depth", d, maximum=MAX_DEPTH) for d in depths]
    seeds = [check_size("seed", s, minimum=0, maximum=MAX_SEED) for s in seeds]
    if not seeds:
        raise DeeplimitError("give at least one seed")
    if len(x) < batch_size * 2:
        raise DeeplimitError(f"coord_check needs at least {2 * batch_size} samples, got {len(x)}; lower batch_size "
                             "or give more data")
    if not math.isfinite(lr) or lr <= 0:
        raise DeeplimitError(f"lr must be a finite positive number, got {lr}")
    tokens = not torch.is_floating_point(x)
    if y is None and not tokens:
        raise DeeplimitError("float inputs need labels y; pass y, or give int token ids for a next-token loss")
    if y is not None and len(y) != len(x):
        raise DeeplimitError(f"x has {len(x)} rows but y has {len(y)}; give one target row per input row")
    loss_fn = loss_fn or (next_token_loss if y is None else default_loss)
    cast = (lambda t: t) if tokens else (lambda t: t.to(dtype))
    rows = []
    eval_x = cast(x[:batch_size])
    for seed in seeds:
        gen = torch.Generator().manual_seed(10_000 + seed)
        # Epochs of the training rows (all but the measurement batch), as many as the steps need.
        pool = len(x) - batch_size
        epochs = [torch.randperm(pool, generator=gen) for _ in range(max(1, -(-steps * batch_size // pool)))]
        order = torch.cat(epochs)[: steps * batch_size] + batch_size
        for width in widths:
            for depth in depths:
                model = call_factory(make_model, width, depth).to(dtype)
                _sites(model)  # before the plan: a model without sites gets the coordinate check's error
                plan = parametrize(model, rule, seed=seed, optimizer=optimizer, base_width=base_width,
                                   base_depth=base_depth, **plan_kwargs)
                if not train_io:
                    for name, p in model.named_parameters():
                        if plan[name].role in ("input", "readout"):
                            p.requires_grad_(False)
                opt = make_optimizer(model, plan, lr)
                init = _first_measure(model, eval_x)
                for t in range(steps + 1):
                    acts = init if t == 0 else _measure(model, eval_x)
                    for site, a in acts.items():
                        a64 = a.double()
                        rows.append({
                            "rule": plan.rule.name, "alpha": plan.rule.alpha, "gamma": plan.rule.gamma,
                            "optimizer": optimizer, "lr": lr, "width": width, "depth": depth,
                            "base_width": base_width, "base_depth": base_depth, "seed": seed, "step": t,
                            "site": site, "l1": a64.abs().mean().item(), "rms": a64.square().mean().sqrt().item(),
                            "delta_rms": (a64 - init[site].double()).square().mean().sqrt().item(),
                        })
                    if t == steps:
                        break
                    idx = order[t * batch_size:(t + 1) * batch_size]
                    xb = cast(x[idx])
                    loss = loss_fn(model(xb), xb if y is None else y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    return pd.DataFrame(rows)


@dataclass
class CoordCheck:
    """A coordinate check's tidy table, its per-step slopes and the verdict (:func:`run_coord_check`)."""

    table: pd.DataFrame
    slopes: pd.DataFrame
    verdict: CoordVerdict

    def save(self, out: str | Path, *, figure: bool = True) -> dict[str, Path]:
        """Write ``coord_check.csv``, ``coord_check_slopes.csv``, ``coord_check_summary.json`` (and the PNG)."""
        out = ensure_dir(out)
        paths = {"table": out / "coord_check.csv", "slopes": out / "coord_check_slopes.csv",
                 "summary": out / "coord_check_summary.json"}
        atomic_write_text(paths["table"], self.table.to_csv(index=False))
        atomic_write_text(paths["slopes"], self.slopes.to_csv(index=False))
        atomic_write_json(paths["summary"], self.verdict.to_dict(), indent=1)
        if figure:
            paths["figure"] = Path(plot_coord_check(self.table, self.verdict.axis, str(out / "coord_check.png")))
        return paths


def run_coord_check(
    make_model: ModelFactory,
    rule: str,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    axis: Literal["width", "depth"],
    sizes: Sequence[int],
    width: int | None = None,
    depth: int | None = None,
    base_width: int | None = None,
    base_depth: int | None = None,
    seeds: int | Sequence[int] = 3,
    steps: int = 10,
    lr: float = 2**-8,
    threshold: float = FLAT,
    **kwargs,
) -> CoordCheck:
    """Coordinate check of ``make_model`` over ``axis`` at ``sizes`` and its verdict, in one call.

    The other axis is held at ``width`` (for a depth check) or ``depth`` (for a width check). The base shape
    defaults to the smallest size and the fixed value. ``seeds`` is a count (seeds 0..k−1) or a list.
    ``kwargs`` go to :func:`coord_check` (``optimizer``, ``batch_size``, ``loss_fn``, ``dtype``, plan options).
    Bad requests (one size, steps < 1, a non-finite LR, no seeds) raise a one-line :class:`DeeplimitError`.
    """
    if axis not in ("width", "depth"):
        raise DeeplimitError(f"axis must be 'width' or 'depth', got {axis!r}")
    sizes = [int(s) for s in sizes]
    if len(set(sizes)) < 2:
        raise DeeplimitError(f"a coordinate check over {axis} needs at least two different {axis}s, got {sizes}")
    if min(sizes) <= 0:
        raise DeeplimitError(f"{axis}s must be positive integers, got {sizes}")
    if steps < 1:
        raise DeeplimitError(f"steps must be >= 1 (the change from init is 0 at step 0), got {steps}")
    if not math.isfinite(lr) or lr <= 0:
        raise DeeplimitError(f"lr must be a finite positive number, got {lr}")
    if isinstance(seeds, int):
        check_positive("seeds", seeds, integer=True)
        seeds = list(range(seeds))
    if not seeds:
        raise DeeplimitError("give at least one seed")
    fixed = depth if axis == "width" else width
    if fixed is None:
        raise DeeplimitError(f"a check over {axis} needs the fixed {'depth' if axis == 'width' else 'width'}")
    check_positive("depth" if axis == "width" else "width", fixed, integer=True)
    widths, depths = (sorted(set(sizes)), [fixed]) if axis == "width" else ([fixed], sorted(set(sizes)))
    base_width = base_width if base_width is not None else min(widths)
    base_depth = base_depth if base_depth is not None else min(depths)
    table = coord_check(make_model, rule, x, y, widths=widths, depths=depths, base_width=base_width,
                        base_depth=base_depth, seeds=seeds, steps=steps, lr=lr, **kwargs)
    sites = None
    if kwargs.get("train_io") is False:  # a frozen input layer does not change: judge the stream and logits
        sites = [s for s in (SITES if axis == "width" else VERDICT_SITES_DEPTH) if s != "input"]
    return CoordCheck(table, log2_slopes(table, axis), coord_verdict(table, axis, threshold=threshold, sites=sites))


def coord_check_verdict(
    rule: str = "mup",
    *,
    axis: Literal["width", "depth"] = "width",
    widths: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    make_model: ModelFactory | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    seeds: int | Sequence[int] = 3,
    steps: int = 10,
    lr: float = 2**-8,
    batch_size: int = 64,
    threshold: float = FLAT,
    seq_len: int = 32,
    **kwargs,
) -> CoordCheck:
    """A whole coordinate check in one call, data and model included: table, per-site slopes and the verdict.

    ``axis="width"`` sweeps ``widths`` (default 64, 128, 256, 512) at the fixed depth ``depths[0]`` (default
    4); ``axis="depth"`` sweeps ``depths`` (default 4, 8, 16, 32, 64) at the fixed width ``widths[0]``
    (default 64). The model is ``make_model(width, depth)``, by default the built-in MLP-ResNet on
    ``data`` (default Fashion-MNIST); any other model gets data in the form it eats (:func:`data_for`: token
    models get text). ``kwargs`` go to :func:`coord_check` (``optimizer``, ``train_io``, ``dtype``) and the
    plan (base-shape constants such as ``sigma_in``, ``sigma_out``, ``input_mult``, ``output_mult``,
    ``block_mult``; ``base_width``/``base_depth``, default the smallest size and the fixed value).

    Returns a :class:`CoordCheck`: ``.verdict.verdict`` is ``"flat"``, ``"grows"``, ``"shrinks"`` or
    ``"inconclusive"``; ``.verdict.slopes`` maps each site (``input``, ``block_first``, ``block_last``,
    ``logits``) to its log2 slope of the change from init per doubling of the axis at the last step;
    ``.verdict.slope``/``.verdict.site`` are the deciding (steepest judged) slope and site; ``.table`` is the
    tidy table, ``.slopes`` the slopes at every step, ``.save(folder)`` writes CSV, JSON and the figure. E.g.
    μP over width::

        cc = coord_check_verdict("mup", axis="width", widths=[64, 128, 256, 512])
        cc.verdict.verdict, cc.verdict.slopes   # "flat", {"input": …, "logits": …}
    """
    if axis not in ("width", "depth"):
        raise DeeplimitError(f"axis must be 'width' or 'depth', got {axis!r}")
    if axis == "width":
        widths = list(widths) if widths is not None else [64, 128, 256, 512]
        depths = list(depths) if depths is not None else [4]
        sizes, fixed = widths, {"depth": depths[0] if depths else None}
        if len(depths) != 1:
            raise DeeplimitError(f"a check over width holds the depth fixed: give one depth, got {depths}")
    else:
        depths = list(depths) if depths is not None else [4, 8, 16, 32, 64]
        widths = list(widths) if widths is not None else [64]
        sizes, fixed = depths, {"width": widths[0] if widths else None}
        if len(widths) != 1:
            raise DeeplimitError(f"a check over depth holds the width fixed: give one width, got {widths}")
    n = check_size("batch_size", batch_size, maximum=MAX_BATCH) * (check_size("steps", steps, maximum=MAX_STEPS) + 2)
    if make_model is None:
        from deeplimit.nn.mlp_resnet import MLPResNet, MLPResNetConfig

        source = data or "fashion-mnist"
        x, y = coord_data(source, kind="features", n=max(n, 60_000), data_dir=data_dir)
        d_in, d_out = x.shape[1], int(y.max()) + 1

        def make_model(w: int, d: int) -> nn.Module:
            return MLPResNet(MLPResNetConfig(d_in=d_in, d_out=d_out, width=w, depth=d))
    else:
        probe = call_factory(make_model, min(widths), min(depths))
        x, y, source = data_for(probe, data, n=n, seq_len=seq_len, data_dir=data_dir)
        del probe
    return run_coord_check(make_model, rule, x, y, axis=axis, sizes=sizes, seeds=seeds, steps=steps, lr=lr,
                           threshold=threshold, batch_size=batch_size, **fixed, **kwargs)
