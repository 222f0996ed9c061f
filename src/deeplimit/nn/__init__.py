"""Models and layers: TP6 MLP-ResNets, transformers (Pre-LN and shaped), multiplier-carrying layers."""

from deeplimit.nn.activations import ShapedReLU, c_phi, get_activation
from deeplimit.nn.attention import MultiHeadAttention, shaped_attention, uniform_attention_apply
from deeplimit.nn.layers import Embedding, Input, Readout, Residual, TiedReadout, declare_roles
from deeplimit.nn.mlp_resnet import MLPBlock, MLPResNet, MLPResNetConfig, init_rms_ratio, mean_subtract
from deeplimit.nn.registry import MODELS, build_model
from deeplimit.nn.transformer import SHAPED, TransformerConfig, TransformerLM

__all__ = ["Embedding", "Input", "MLPBlock", "MLPResNet", "MLPResNetConfig", "MODELS", "MultiHeadAttention",
           "Readout", "Residual", "SHAPED", "ShapedReLU", "TiedReadout", "TransformerConfig", "TransformerLM",
           "build_model", "c_phi", "declare_roles", "get_activation", "init_rms_ratio", "mean_subtract",
           "shaped_attention", "uniform_attention_apply"]
