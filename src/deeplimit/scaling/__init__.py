"""Width μP × depth scaling core: rules, plans and optimizer groups."""

from deeplimit.scaling.apply import load_checkpoint, parametrize, save_checkpoint
from deeplimit.scaling.optim import make_optimizer, set_base_lr
from deeplimit.scaling.plan import HParams, ParamPlan, Plan, canonical_name, make_plan
from deeplimit.scaling.rules import PRESETS, Rule, get_rule, rule_names

__all__ = ["HParams", "PRESETS", "ParamPlan", "Plan", "Rule", "canonical_name", "get_rule", "load_checkpoint",
           "make_optimizer", "parametrize", "save_checkpoint",
           "make_plan", "rule_names", "set_base_lr"]
