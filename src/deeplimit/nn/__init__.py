"""Models and layers: TP6 MLP-ResNets, multiplier-carrying layers (and, later, transformers)."""

from deeplimit.nn.layers import Embedding, Input, Readout, Residual, declare_roles
from deeplimit.nn.mlp_resnet import MLPBlock, MLPResNet, MLPResNetConfig, init_rms_ratio, mean_subtract

__all__ = ["Embedding", "Input", "MLPBlock", "MLPResNet", "MLPResNetConfig", "Readout", "Residual", "declare_roles",
           "init_rms_ratio", "mean_subtract"]
