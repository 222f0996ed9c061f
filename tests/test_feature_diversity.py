"""Feature diversity κ: the closed form at init (spec §7) and the Depth-μP vs ODE contrast after training."""

import pytest
import torch

import deeplimit as dl
from deeplimit.diagnostics.feature_diversity import feature_diversity, init_distance_ratio
from deeplimit.nn.mlp_resnet import C_PHI


def test_init_distance_matches_closed_form_and_kappa_is_half():
    """Spec §7 float64 check: n = 1024, abs, a = 2^-1.5, L₀ = 8, u = ½, Δu = 1/8 → ≈ 0.213–0.216."""
    torch.manual_seed(0)
    xi = torch.randn(32, 784, dtype=torch.float64)
    a = 2**-1.5
    for depth in (8, 64):
        model = dl.MLPResNet(width=1024, depth=depth, activation="abs").double()
        dl.parametrize(model, "depth_mup", base_width=1024, base_depth=8, block_mult=a, seed=1)
        dist, kap = feature_diversity(model, xi, us=(0.5,), du_max=1 / 8)
        row = dist[dist["du"] == 1 / 8].iloc[0]
        formula = init_distance_ratio(1 / 8, depth, 8, 0.5, a, C_PHI["abs"])
        assert row["d"] / row["rms_ref"] == pytest.approx(formula, rel=0.06)
        if depth == 64:  # Δu = 1/64 … 1/8: four points; at init the increments are Brownian: slope ½
            assert kap.iloc[0]["kappa"] == pytest.approx(0.5, abs=0.1)


def test_feature_diversity_needs_a_stream():
    with pytest.raises(dl.DeeplimitError, match="return_stream"):
        feature_diversity(torch.nn.Linear(3, 3), torch.randn(2, 3))
