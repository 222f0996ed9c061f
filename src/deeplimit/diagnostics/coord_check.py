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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from deeplimit.errors import DeeplimitError, check_positive
from deeplimit.io import atomic_write_json, atomic_write_text, ensure_dir
from deeplimit.scaling import hf
from deeplimit.scaling.apply import parametrize
from deeplimit.scaling.optim import make_optimizer
from deeplimit.scaling.structure import get_structure

ModelFactory = Callable[[int, int], nn.Module]
LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
FLAT = 0.25  # |log2 slope| per doubling below which a coordinate counts as flat
SITES = ("input", "block_first", "block_last", "logits")
VERDICT_SITES_DEPTH = ("input", "block_last", "logits")


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


def call_factory(make_model: ModelFactory, width: int, depth: int) -> nn.Module:
    """``make_model(width, depth)``, with a one-line error naming the factory when it raises or returns no module."""
    name = getattr(make_model, "__name__", type(make_model).__name__)
    try:
        model = make_model(width, depth)
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
    if len(x) < batch_size * 2:
        raise DeeplimitError(f"coord_check needs at least {2 * batch_size} samples, got {len(x)}")
    if steps < 0:
        raise DeeplimitError(f"steps must be >= 0, got {steps}")
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
                init = _measure(model, eval_x)
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


def log2_slopes(df: pd.DataFrame, axis: str, stat: str = "delta_rms") -> pd.DataFrame:
    """Least-squares slope of log2(seed-mean ``stat``) on log2(``axis``), per (rule, site, step).

    A slope near 0 means the coordinate is flat along ``axis`` (the check passes); ``stat`` = 0 (e.g. the
    change at t = 0), a single size or a non-finite value gives NaN.
    """
    if axis not in ("width", "depth"):
        raise DeeplimitError(f"axis must be 'width' or 'depth', got {axis!r}")
    mean = df.groupby(["rule", "site", "step", axis], as_index=False)[stat].mean()
    out = []
    for (rule, site, step), g in mean.groupby(["rule", "site", "step"]):
        v = g[stat].to_numpy()
        if len(g) < 2 or np.any(v <= 0) or not np.all(np.isfinite(v)):
            slope = float("nan")
        else:
            slope = float(np.polyfit(np.log2(g[axis].to_numpy(float)), np.log2(v), 1)[0])
        out.append({"rule": rule, "site": site, "step": step, "slope": slope})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------------------
# The verdict
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CoordVerdict:
    """Flat or not along one axis, from the log2 slopes of the change from init at one step.

    ``verdict`` is ``"flat"`` (every site's |slope| ≤ ``threshold``), ``"not flat"`` (some site above it) or
    ``"inconclusive"`` (a slope could not be measured: activations went non-finite, or did not change; the
    ``reason`` says which). ``slopes`` maps every site → log2 slope per doubling of the axis; ``judged`` names
    the sites that decide the verdict.
    """

    verdict: Literal["flat", "not flat", "inconclusive"]
    rule: str
    axis: str
    sizes: tuple[int, ...]
    step: int
    stat: str
    slopes: dict[str, float]
    judged: tuple[str, ...]
    threshold: float
    max_abs_slope: float
    reason: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        d["judged"] = list(self.judged)
        d["slopes"] = {k: (None if math.isnan(v) else round(v, 4)) for k, v in self.slopes.items()}
        d["max_abs_slope"] = None if math.isnan(self.max_abs_slope) else round(self.max_abs_slope, 4)
        # the key older reports read
        d["log2_slope_of_change_per_site"] = d["slopes"]
        d["final_step"] = self.step
        return d

    def line(self) -> str:
        if self.verdict == "inconclusive":
            return f"verdict: inconclusive ({self.reason})"
        return f"verdict: {self.verdict} (max |slope| {self.max_abs_slope:.3f}, threshold {self.threshold})"


def coord_verdict(df: pd.DataFrame, axis: str, *, threshold: float = FLAT, stat: str = "delta_rms",
                  step: int | None = None, sites: Sequence[str] | None = None) -> CoordVerdict:
    """Judge a :func:`coord_check` table along ``axis`` (``"width"`` or ``"depth"``) at ``step`` (default: last).

    ``sites`` default: all four over width; over depth ``input``, ``block_last`` and ``logits`` — the first
    block's own change is one block's share of the stream, O(L^{-α}) by design (depth-mup spec §8.2), so it is
    reported in ``slopes``' table but does not decide the verdict.

    Raises a :class:`DeeplimitError` when the table cannot give a slope at all (fewer than two sizes, or only
    step 0, where the change from init is 0 by definition). A slope lost to non-finite or zero values gives
    ``"inconclusive"``, never ``"not flat"``.
    """
    if not math.isfinite(threshold) or threshold <= 0:
        raise DeeplimitError(f"threshold must be a finite positive number, got {threshold}")
    if df.empty:
        raise DeeplimitError("the coordinate-check table is empty; run coord_check first")
    sizes = tuple(sorted(int(s) for s in df[axis].unique()))
    if len(sizes) < 2:
        raise DeeplimitError(f"a coordinate check over {axis} needs at least two {axis}s, got {list(sizes)}")
    last = int(df["step"].max())
    step = last if step is None else int(step)
    if step < 1 or step > last:
        raise DeeplimitError(f"the verdict needs a step in 1..{last} (the change from init is 0 at step 0); "
                             "train at least one step (steps >= 1)")
    rules = df["rule"].unique()
    if len(rules) != 1:
        raise DeeplimitError(f"the table mixes rules {sorted(rules)}; judge one rule at a time")
    at = df[df["step"] == step]
    if sites is None:
        # Over depth one block's share of the stream shrinks like L^-alpha by design; the stream itself
        # (block_last) and the logits are what must not move with depth.
        default = SITES if axis == "width" else VERDICT_SITES_DEPTH
        sites = [s for s in default if s in set(at["site"])]
    wanted = list(sites)
    slopes_df = log2_slopes(at, axis, stat).set_index("site")["slope"]
    missing = sorted(set(wanted) - set(slopes_df.index))
    if missing:
        raise DeeplimitError(f"sites {missing} are not in the table (it has {sorted(slopes_df.index)})")
    slopes = {s: float(slopes_df[s]) for s in SITES if s in slopes_df.index}
    slopes.update({s: float(v) for s, v in slopes_df.items() if s not in slopes})
    bad = [s for s in wanted if math.isnan(slopes[s])]
    if bad:
        sub = at[at["site"].isin(bad)]
        if not np.all(np.isfinite(sub[stat].to_numpy())):
            where = sorted({int(v) for v in sub.loc[~np.isfinite(sub[stat]), axis]})
            reason = (f"non-finite activations at {axis} {where} for {bad}: the run diverged; lower the learning "
                      "rate")
        else:
            where = sorted({int(v) for v in sub.loc[sub[stat] <= 0, axis]})
            reason = (f"no change from init at {axis} {where} for {bad}: the step did nothing; raise the learning "
                      "rate or check that the parameters train")
        return CoordVerdict("inconclusive", str(rules[0]), axis, sizes, step, stat, slopes, tuple(wanted),
                            threshold, float("nan"), reason)
    worst_site = max(wanted, key=lambda s: abs(slopes[s]))
    worst = abs(slopes[worst_site])
    verdict = "flat" if worst <= threshold else "not flat"
    return CoordVerdict(verdict, str(rules[0]), axis, sizes, step, stat, slopes, tuple(wanted), threshold, worst,
                        f"max |log2 slope| of {stat} at step {step} is {worst:.3f} ({worst_site})")


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


# ----------------------------------------------------------------------------------------------------------
# Data for a coordinate check of any model
# ----------------------------------------------------------------------------------------------------------
def coord_data(source: str, *, kind: Literal["tokens", "images", "features"], n: int = 256, seq_len: int = 32,
               vocab_size: int = 256, seed: int = 0, data_dir: str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples for a coordinate check from an offline dataset.

    ``kind="tokens"``: byte windows ``(n, seq_len)`` of a text corpus (``shakespeare``, ``stdlib`` or a file)
    with next-byte targets, ids taken mod ``vocab_size``. ``"images"``: ``(n, 1, 28, 28)`` Fashion-MNIST /
    ``(n, 1, 8, 8)`` digits (or an .npz) with labels; ``"features"``: the same images flattened to ``(n, d)``.
    """
    check_positive("n", n, integer=True)
    if kind == "tokens":
        from deeplimit.data import ByteCorpus

        check_positive("seq_len", seq_len, integer=True)
        check_positive("vocab_size", vocab_size, integer=True)
        corpus = ByteCorpus.load(source, data_dir)
        x, y = corpus.get_batch("train", n, seq_len, torch.Generator().manual_seed(seed))
        return x.remainder(vocab_size), y.remainder(vocab_size)
    if kind not in ("images", "features"):
        raise DeeplimitError(f"kind must be 'tokens', 'images' or 'features', got {kind!r}")
    from deeplimit.data import load_image_dataset

    x, y = load_image_dataset(source, split="train", data_dir=data_dir)
    x, y = x[:n], y[:n]
    if kind == "features":
        return x.reshape(len(x), -1), y
    side = int(round(math.sqrt(x[0].numel())))
    if x.ndim == 2 and side * side == x.shape[1]:
        x = x.reshape(len(x), 1, side, side)
    return x, y


def data_for(model: nn.Module, data: str | None = None, *, n: int = 256, seq_len: int = 32, seed: int = 0,
             data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """:func:`coord_data` in the form ``model`` eats, and its name: ``(x, y, source)``.

    A Hugging Face model eats token ids (vocab from its config; default corpus ``shakespeare``) or images
    (default ``fashion-mnist``, shaped ``(n, C, H, W)``). Any other model eats token ids when ``data`` is a
    text corpus (vocab from ``model.vocab_size`` / ``model.config.vocab_size``, else 256 bytes) and flattened
    images otherwise (default ``fashion-mnist``).
    """
    from deeplimit.data import CORPORA

    inner = hf.unwrap(model)
    vocab = getattr(inner, "vocab_size", None) or getattr(getattr(inner, "config", None), "vocab_size", None) or 256
    if hf.is_hf_model(inner):
        kind = "images" if hf.input_kind(inner) == "images" else "tokens"
    elif data is not None and (data in CORPORA or data.endswith(".txt")):
        kind = "tokens"
    else:
        kind = "features"
    source = data or ("shakespeare" if kind == "tokens" else "fashion-mnist")
    x, y = coord_data(source, kind=kind, n=n, seq_len=seq_len, vocab_size=int(vocab), seed=seed, data_dir=data_dir)
    return x, y, source


# ----------------------------------------------------------------------------------------------------------
# The figure
# ----------------------------------------------------------------------------------------------------------
def plot_coord_check(df: pd.DataFrame, axis: str, path: str, stats: Sequence[str] = ("rms", "delta_rms"),
                     steps: Sequence[int] | None = None) -> str:
    """mup-style figure: one panel per step, x = width or depth (log2), one curve per site, mean ± s.e.

    One row per (rule, statistic): the activation size ``rms`` and its change from init ``delta_rms``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_steps = sorted(df["step"].unique())
    if steps is None:
        steps = sorted({all_steps[int(round(i))] for i in np.linspace(0, len(all_steps) - 1, min(6, len(all_steps)))})
    rows = [(rule, stat) for rule in sorted(df["rule"].unique()) for stat in stats]
    fig, axes = plt.subplots(len(rows), len(steps), figsize=(2.9 * len(steps), 2.5 * len(rows) + 0.8),
                             squeeze=False, sharex=True)
    sites = list(SITES)
    colors = dict(zip(sites, plt.get_cmap("viridis")(np.linspace(0, 0.9, len(sites)))))
    for i, (rule, stat) in enumerate(rows):
        for j, t in enumerate(steps):
            ax = axes[i, j]
            sub = df[(df["rule"] == rule) & (df["step"] == t)]
            drawn = False
            for site in sites:
                g = sub[sub["site"] == site].groupby(axis)[stat]
                m, s = g.mean(), g.sem().fillna(0)
                if len(m) == 0 or (m <= 0).any() or not np.all(np.isfinite(m.values)):
                    continue
                ax.errorbar(m.index, m.values, yerr=s.values, marker="o", ms=3, lw=1.2, capsize=2,
                            color=colors[site], label=site)
                drawn = True
            if drawn:
                ax.set_yscale("log")
            else:
                ax.text(0.5, 0.5, "0 at init" if stat == "delta_rms" else "no data", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
            ax.set_xscale("log", base=2)
            ax.set_title(f"{rule}, t = {t}", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel(axis + " (log2)")
            if j == 0:
                ax.set_ylabel({"rms": "RMS of activation", "delta_rms": "RMS change from init",
                               "l1": "mean |activation|"}.get(stat, stat))
            ax.grid(alpha=0.3, which="both")
    handles, labels = [], []
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            break
    fig.legend(handles, labels, loc="lower center", ncol=len(sites), frameon=False)
    fig.suptitle(f"coordinate check over {axis} (mean ± s.e. over seeds; flat = transfers)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

