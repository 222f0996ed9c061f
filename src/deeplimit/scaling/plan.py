"""The plan of one model: :func:`make_plan` builds it, :class:`Plan` is the record with the verbs users call.

The pipeline, one small module per step (as ``mup``'s ``set_base_shapes`` → ``_extract_shapes`` →
``apply_infshapes``):

1. :mod:`.classify` walks the model once: roles, blocks, multiplier and attention sites (a ``Layout``);
2. :mod:`.resolve` sets each tensor's width multipliers (:mod:`.shapes`) and evaluates the implementation table
   of the depth-mup spec §4 (:mod:`.table`) for it;
3. :mod:`.record` holds the result (:class:`~deeplimit.scaling.record.PlanRecord`: numbers, validation, JSON);
4. :mod:`.bind` checks it against a model, sets its multipliers and draws its init; :mod:`.groups` turns it into
   optimizer groups; :mod:`.present` prints it.

:class:`Plan` adds those steps' verbs to the record as one-line methods; this module is the only one that
imports all of them, so none of them imports it. The plan lives *beside* the model (JSON next to a checkpoint),
never on ``nn.Parameter``; names are canonical (:mod:`.names`), so DDP, ``torch.compile`` and FSDP prefixes do
not matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import torch
from torch import nn

from deeplimit.errors import warn
from deeplimit.scaling import bind, groups, present, resolve
from deeplimit.scaling.classify import classify
from deeplimit.scaling.hparams import HParams, hparams_with
from deeplimit.scaling.names import canonical_name
from deeplimit.scaling.record import HF_PLAN_KEY, PLAN_VERSION, ParamPlan, PlanRecord
from deeplimit.scaling.rules import Rule, get_rule
from deeplimit.scaling.shapes import width_from_base

__all__ = ["HF_PLAN_KEY", "PLAN_VERSION", "HParams", "ParamPlan", "Plan", "canonical_name", "make_plan"]


class Plan(PlanRecord):
    """A resolved parametrization of one model. Build it with :func:`make_plan` (or :func:`deeplimit.parametrize`).

    The fields, their checks and the JSON form are :class:`~deeplimit.scaling.record.PlanRecord`'s; each method
    here is one step of the pipeline applied to this plan (see the module docstring).
    """

    def check(self, model: nn.Module) -> None:
        """Raise a DeeplimitError naming every parameter that does not match; see :func:`.bind.check`."""
        bind.check(self, model)

    def apply(self, model: nn.Module) -> nn.Module:
        """Set the forward multipliers on the model (idempotent); see :func:`.bind.apply`. Returns the model."""
        return bind.apply(self, model)

    def initialize(self, model: nn.Module, seed: int | torch.Generator = 0) -> nn.Module:
        """Re-initialise every tensor with the plan's init; see :func:`.bind.initialize`. Returns the model."""
        return bind.initialize(self, model, seed)

    def param_groups(self, model: nn.Module, lr: float, *, weight_decay: float | None = None, eps: float = 1e-8,
                     **decay: float | None) -> list[dict]:
        """Parameter groups for ``torch.optim``; see :func:`deeplimit.scaling.groups.param_groups` (``decay``:
        ``wd_timescale``, ``wd_timescale_fraction``, ``total_steps``)."""
        return groups.param_groups(self, model, lr, weight_decay=weight_decay, eps=eps, **decay)

    def rows(self, lr: float | None = None, eps: float = 1e-8, weight_decay: float | None = None,
             **decay: float | None) -> list[dict]:
        """One dict per tensor with the resolved numbers; see :func:`deeplimit.scaling.present.rows`."""
        return present.rows(self, lr, eps, weight_decay, **decay)

    def summary(self) -> str:
        """Rule, shapes and multipliers in a few lines; see :func:`deeplimit.scaling.present.summary`."""
        return present.summary(self)

    def table(self, lr: float | None = None, eps: float = 1e-8, weight_decay: float | None = None,
              **decay: float | None) -> str:
        """Human-readable table; see :func:`deeplimit.scaling.present.table`."""
        return present.table(self, lr, eps, weight_decay, **decay)

    def with_optimizer(self, optimizer: str) -> Plan:
        """The same plan for another optimizer (the LR and ε columns differ between SGD and Adam)."""
        optimizer = resolve.check_optimizer(optimizer)
        return replace(self, optimizer=optimizer, params=resolve.reoptimized(self, optimizer),
                       multipliers=dict(self.multipliers), notes=list(self.notes))


def make_plan(
    model: nn.Module,
    rule: str | Rule = "depth_mup",
    *,
    optimizer: str = "adam",
    base_width: float | None = None,
    base_depth: int | None = None,
    width: float | None = None,
    depth: int | None = None,
    base: nn.Module | None = None,
    roles: Mapping[str, str] | None = None,
    alpha: float | None = None,
    gamma: float | None = None,
    eps_scope: str | None = None,
    weight_decay_mode: str | None = None,
    attn_scale: str | None = None,
    hparams: HParams | None = None,
    sigma_from: Literal["model", "hparams"] = "model",
    **hp_overrides: float,
) -> Plan:
    """Resolve ``rule`` for every parameter of ``model`` (depth-mup spec §4).

    Args:
        model: any ``nn.Module``. Roles come from ``roles`` (fnmatch patterns on parameter names), the model's
            :class:`~deeplimit.scaling.structure.Structure` (``dl.declare_structure``), modules' ``dl_roles``,
            norms/biases (vectors), embeddings (input), parameters inside residual blocks (hidden), or shape
            differences with ``base`` (as ``mup.set_base_shapes``); see :mod:`deeplimit.scaling.classify`.
        rule: a name in ``RULES`` or a :class:`Rule` (see :mod:`deeplimit.scaling.rules`).
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"`` (the LR and ε columns differ) or ``"muon"`` (hidden
            matrices on ``torch.optim.Muon`` with the spectral LR, everything else on AdamW; docs/optimizers.md).
        base_width, base_depth: the tuned base shape (n₀, L₀). If omitted, base = target (all factors 1) and a
            warning is issued for non-SP rules (decision D7).
        width, depth: the model's width n and number of residual blocks L; default to the Structure's, to
            ``model.width`` / ``model.depth`` or, for depth, the number of residual blocks found.
        base: alternatively, a base-width instance of the same architecture (per-tensor multipliers).
        attn_scale: attention logit scale law, ``"mup"`` or ``"sqrt"`` (spec §5.1; default by width rule).
        hparams / hp_overrides: base hyperparameters (``block_mult``, ``input_mult``, ``output_mult``,
            ``attn_mult``, σ's, …; see :class:`HParams`). NaN, inf and non-positive multipliers are refused.
        sigma_from: where the base-shape init stds come from when not given. ``"model"`` (default): a Hugging Face
            model's own init at the base shape (``config.initializer_range``, GPT-2's residual scaling, …;
            :func:`deeplimit.scaling.hf_init.model_init_stds`), so at the base shape the plan draws every tensor as
            the model itself does, and the rule's width law carries it to other widths; other models and tensors
            the model does not draw from a fixed-std law use the :class:`HParams` σ's. ``"hparams"``: the
            :class:`HParams` σ's everywhere. A σ given in ``hp_overrides`` (or any ``hparams=``) always wins for
            its role. Each tensor's ``init_source`` says which applied.
    """
    rule = get_rule(rule, alpha=alpha, gamma=gamma, eps_scope=eps_scope, weight_decay_mode=weight_decay_mode,
                    attn_scale=attn_scale)
    optimizer = resolve.check_optimizer(optimizer)
    hp = hparams_with(hparams, hp_overrides)
    notes: list[str] = []
    width, depth = resolve.given_sizes(model, width, depth)
    width, base_width, shapes, infer_width = resolve.base_width_of(rule, width, base_width, base, notes)
    layout = classify(model, roles, shapes)
    resolve.refuse_unresolved(model, layout, width)
    if infer_width:  # a mup-style pair of plain models: m_N is read off their shapes
        width, base_width = width_from_base(layout.params, width, base_width)
    depth, base_depth = resolve.depths(rule, layout, depth, base_depth, base, notes)
    sigmas = resolve.sigmas_of(model, sigma_from, hparams, hp_overrides, base_width, base_depth)
    width, base_width = float(width), float(base_width)
    if shapes is None:
        resolve.set_width_mults(layout, width / base_width)
    block_depth = max(layout.blocks.values(), default=1)
    notes += resolve.rule_warnings(model, rule, block_depth, bool(layout.blocks), layout.family)
    params, multipliers, attention = resolve.resolve(rule, optimizer, width / base_width, depth / base_depth, hp,
                                                     layout, sigmas)
    source = layout.structure.source if layout.structure is not None else None
    plan = Plan(rule, optimizer, width, base_width, depth, base_depth, hp, params, multipliers, block_depth,
                list(notes), attention, layout.family, source)
    for n in notes:
        warn(n, stacklevel=2)
    return plan
