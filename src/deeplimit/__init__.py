"""deeplimit: neural networks in the infinite depth-and-width limit.

    import deeplimit as dl
    model = dl.MLPResNet(width=256, depth=32)
    plan = dl.parametrize(model, "depth_mup", base_width=64, base_depth=4, optimizer="adam")
    opt = dl.make_optimizer(model, plan, lr=2**-8)
    print(plan.table(lr=2**-8))
"""

from deeplimit.errors import DeeplimitError, DeeplimitWarning
from deeplimit.nn import (
    Embedding,
    Input,
    MLPResNet,
    MLPResNetConfig,
    Readout,
    Residual,
    TiedReadout,
    TransformerConfig,
    TransformerLM,
    declare_roles,
)
from deeplimit.scaling import (
    AttentionSpec,
    HParams,
    Plan,
    Rule,
    Structure,
    declare_structure,
    get_rule,
    load_checkpoint,
    make_optimizer,
    make_plan,
    parametrize,
    rule_names,
    save_checkpoint,
    scheduler,
    set_base_lr,
)

__version__ = "0.1.0"
__all__ = [
    "AttentionSpec", "DeeplimitError", "DeeplimitWarning", "Embedding", "HParams", "Input", "MLPResNet",
    "MLPResNetConfig", "Plan", "Readout", "Residual", "Rule", "Structure", "TiedReadout", "TransformerConfig",
    "TransformerLM", "declare_roles", "declare_structure", "get_rule", "load_checkpoint", "make_optimizer",
    "make_plan", "parametrize", "rule_names", "save_checkpoint", "scheduler", "set_base_lr", "__version__",
]
