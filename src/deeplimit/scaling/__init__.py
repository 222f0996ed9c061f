"""Width μP × depth scaling core: rules, plans and optimizer groups.

One small module per concern (the pipeline of ``mup``'s ``shape.py``):

* :mod:`.rules` — the named rules (``RULES``) and :class:`Rule`;
* :mod:`.hparams` — base-shape hyperparameters; :mod:`.checks` — finite-number checks;
* :mod:`.structure` — :class:`Structure`, how a model you cannot edit is described; :mod:`.hf` — the Structure of a
  Hugging Face model, found by one probe forward; :mod:`.declared` — what a model declares (its Structure, width,
  depth), through wrappers;
* :mod:`.classify` — roles, blocks, multiplier and attention sites from declarations, Structure and types;
* :mod:`.shapes` — fans and width multipliers; :mod:`.names` — canonical names;
* :mod:`.table` — the depth-mup spec §4 table, one pure function per column (the only place the formulas live);
* :mod:`.record` — the plan's numbers, checked and serialised; :mod:`.resolve` — the table evaluated for one model;
  :mod:`.bind` — check, apply and initialize a plan on a model; :mod:`.plan` — :func:`make_plan`, which runs
  these steps, and :class:`Plan`, the record with their verbs as methods;
* :mod:`.groups`, :mod:`.optim` — optimizer groups (λ or a decay timescale), :func:`make_optimizer` (SGD, Adam, AdamW,
  Muon + AdamW as one :class:`CombinedOptimizer`), :func:`set_base_lr`, :func:`scheduler`;
* :mod:`.present` — the printed table; :mod:`.apply` — :func:`parametrize` and checkpoints.

The names below are imported on first use (PEP 562, as in ``deeplimit/__init__.py``): importing a light module
such as :mod:`.rules` or :mod:`.hparams` — what a command line needs to check a rule name — loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from deeplimit._lazy import lazy_names as _lazy_names

if _TYPE_CHECKING:  # never run: the modules _LAZY reads from, for readers of the source (the import-graph tests and
    # the report's code fingerprint follow imports, not strings); a test checks that the two lists agree
    from deeplimit.scaling import apply, declared, hparams, names, optim, plan, rules, structure  # noqa: F401

_LAZY = {name: f"deeplimit.scaling.{module}" for module, names in {
    "apply": ("load_checkpoint", "parametrize", "save_checkpoint"),
    "declared": ("get_structure",),
    "hparams": ("HParams",),
    "names": ("canonical_name",),
    "optim": ("CombinedOptimizer", "ScaledScheduler", "make_optimizer", "scheduler", "set_base_lr"),
    "plan": ("ParamPlan", "Plan", "make_plan"),
    "rules": ("RULES", "Rule", "get_rule", "rule_names"),
    "structure": ("AttentionSpec", "Structure", "declare_structure"),
}.items() for name in names}

__all__ = sorted(_LAZY)


# ``dir()``: the public API only (the names in ``__all__``), as ``dir(deeplimit)``
__getattr__, __dir__ = _lazy_names(__name__, _LAZY, globals(), public=__all__)
