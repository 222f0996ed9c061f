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
"""

from deeplimit.scaling.apply import load_checkpoint, parametrize, save_checkpoint
from deeplimit.scaling.declared import get_structure
from deeplimit.scaling.hparams import HParams
from deeplimit.scaling.names import canonical_name
from deeplimit.scaling.optim import CombinedOptimizer, ScaledScheduler, make_optimizer, scheduler, set_base_lr
from deeplimit.scaling.plan import ParamPlan, Plan, make_plan
from deeplimit.scaling.rules import RULES, Rule, get_rule, rule_names
from deeplimit.scaling.structure import AttentionSpec, Structure, declare_structure

__all__ = ["AttentionSpec", "CombinedOptimizer", "HParams", "ParamPlan", "Plan", "RULES", "Rule", "ScaledScheduler",
           "Structure", "canonical_name", "declare_structure", "get_rule", "get_structure", "load_checkpoint",
           "make_optimizer", "make_plan", "parametrize", "rule_names", "save_checkpoint", "scheduler", "set_base_lr"]
