"""Coordinate checks over depth and width on Fashion-MNIST, and the closed-form init RMS ratio (spec §8.1)."""

import functools
import math

import pytest
import torch

import deeplimit as dl
from deeplimit.data import load_fashion_mnist
from deeplimit.diagnostics import coord_check, log2_slopes
from deeplimit.diagnostics.coordinates import coord_verdict


@pytest.fixture(scope="module")
def fmnist():
    x, y = load_fashion_mnist(split="train")
    return x[:4096], y[:4096]


def _depth_slopes(fmnist, rule):
    x, y = fmnist
    df = coord_check(lambda w, d: dl.MLPResNet(width=w, depth=d), rule, x, y, widths=[64], depths=[4, 8, 16, 32, 64],
                     base_width=64, base_depth=4, steps=3, seeds=[0, 1], lr=2**-8)
    s = log2_slopes(df, "depth")
    return s[s["step"] == 3].set_index("site")["slope"]


def test_depth_coord_check_is_flat_for_depth_mup_and_not_for_sp(fmnist):
    """Spec §8.2: change-from-init ∝ L^{1−α−γ}: 0 for Depth-μP, large for SP (0, 0)."""
    dm = _depth_slopes(fmnist, "depth_mup")
    assert dm[["block_last", "logits"]].abs().max() < 0.25, dm
    sp = _depth_slopes(fmnist, "sp")
    assert sp[["block_last", "logits"]].min() > 1.0, sp


@pytest.mark.parametrize("rule,expected", [("depth_mup", 0.0), ("blocks_only", 0.5)])
def test_one_step_change_scales_like_L_to_the_1_minus_alpha_minus_gamma(rule, expected):
    """Spec §8.2 (derived from TP6 App. D): RMS(x^L_1 − x^L_0) ∝ L^{1−α−γ}; float64, d_in = 32, Adam, one step."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 32, generator=g), torch.randint(0, 10, (512,), generator=g)
    df = coord_check(lambda w, d: dl.MLPResNet(d_in=32, width=w, depth=d), rule, x, y, widths=[128],
                     depths=[8, 16, 32, 64], base_width=128, base_depth=4, steps=1, seeds=[0, 1], lr=2**-10,
                     dtype=torch.float64)
    s = log2_slopes(df, "depth")
    slope = s[(s["step"] == 1) & (s["site"] == "block_last")]["slope"].item()
    assert slope == pytest.approx(expected, abs=0.2)


def test_width_coord_check_is_flat_for_mup_and_not_for_sp(fmnist):
    x, y = fmnist
    kw = dict(widths=[64, 256, 1024], depths=[2], base_width=64, base_depth=2, steps=3, seeds=[0], lr=2**-8)
    mk = lambda w, d: dl.MLPResNet(width=w, depth=d)
    mup = log2_slopes(coord_check(mk, "mup", x, y, **kw), "width")
    sp = log2_slopes(coord_check(mk, "sp", x, y, **kw), "width")
    mup3, sp3 = (s[s["step"] == 3].set_index("site")["slope"] for s in (mup, sp))
    assert mup3[["block_last", "logits"]].abs().max() < 0.25, mup3
    # SP with Adam: hidden updates have Θ(1) entries, so the change grows like √n (slope ≈ ½) or more
    assert sp3["logits"] > 0.35, sp3


# (activation, block multiplier a) of the init check; both share one draw of the weights per depth and seed
INIT_ACTIVATIONS = (("relu", 2.0), ("abs", 1.0))


def _init_model(depth, activation):
    # built on the meta device and made float64 there: the constructor's own draws and a float32 copy are never read
    with torch.device("meta"):
        return dl.MLPResNet(width=512, depth=depth, activation=activation).double()


@functools.cache
def _init_rms_ratios(depth, seed):
    """{activation: RMS(x^L)/RMS(x^0)} at init under Depth-μP (width 512, base depth 8), for every activation of
    :data:`INIT_ACTIVATIONS`, from one draw of the weights.

    The plan's init depends on neither the activation nor the block multiplier (asserted at depth 8, where a second
    draw is cheap), so the second activation's model takes the first one's tensors instead of drawing them again:
    the float64 draws are this check's whole cost."""
    torch.manual_seed(0)
    xi = torch.randn(32, 784, dtype=torch.float64)
    ratios, weights = {}, None
    for activation, a in INIT_ACTIVATIONS:
        model = _init_model(depth, activation)
        kw = dict(base_width=512, base_depth=8, block_mult=a)
        if weights is None or depth == 8:
            model = model.to_empty(device="cpu")
            dl.parametrize(model, "depth_mup", seed=seed, **kw)
            drawn = dict(model.named_parameters())
            assert weights is None or all(torch.equal(drawn[k], w) for k, w in weights.items())
            weights = drawn
        else:
            model.load_state_dict(weights, assign=True)
            dl.parametrize(model, "depth_mup", init="keep", **kw)
        with torch.no_grad():
            _, stream = model(xi, return_stream=True)
        rms = lambda t: t.square().mean().sqrt().item()
        ratios[activation] = rms(stream[-1]) / rms(stream[0])
    return ratios


@pytest.mark.parametrize("activation,a", INIT_ACTIVATIONS)
def test_init_rms_ratio_matches_closed_form(activation, a):
    """Spec §8.1: RMS(x^L)/RMS(x^0) = (1 + a²c_φ m_L^{-2α})^{L/2}; mean over 2 seeds within 5% (float64).

    Two seeds, not four: drawing the 256-block float64 models is the cost, and the two-seed means are within 1.7%
    of the formula at every depth (one seed's ratio within 3.9%, measured over seeds 0-3), so 5% keeps a 3× margin
    while a wrong c_φ, multiplier or depth exponent moves the depth-256 ratio by far more.

    The model is built on the meta device: parametrize draws every parameter itself (the same tensors as after a
    default-initialised build, checked equal at depth 256), so the constructor's own draws were a third of the cost;
    and a parameter parametrize left undrawn would hold garbage here and fail the check. Both activations are
    measured on the same draws (:func:`_init_rms_ratios`)."""
    for depth in (8, 64, 256):
        ratios = [_init_rms_ratios(depth, seed)[activation] for seed in range(2)]
        formula = dl.nn.init_rms_ratio(depth, 8, 0.5, block_mult=a, activation=activation)
        assert sum(ratios) / len(ratios) == pytest.approx(formula, rel=0.05), (depth, ratios, formula)
    # bounded in depth under α = ½ (limit exp(a² c_φ L₀ / 2)) but exploding under SP
    c = dl.nn.mlp_resnet.C_PHI[activation]
    assert dl.nn.init_rms_ratio(4096, 8, 0.5, a, activation) < math.exp(a * a * c * 8 / 2)
    assert dl.nn.init_rms_ratio(256, 8, 0.0, a, activation) > 1e6


def test_coord_check_cli_writes_table_figure_and_verdict(tmp_path, capsys):
    # In process: what is checked is the command's output, files and exit code, not a process's behaviour (real
    # processes' exit codes and one-line errors: test_bad_input.py); a second interpreter cost ~3 s of imports.
    from deeplimit.cli import main

    out = tmp_path / "cc"
    rc = main(["coord-check", "--axis", "depth", "--depths", "4", "16", "--steps", "2", "--seeds", "1", "--rule",
               "depth-mup", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "verdict: flat" in captured.out
    assert (out / "coord_check.csv").stat().st_size > 0 and (out / "coord_check.png").stat().st_size > 10_000
    assert main(["coord-check", "--rule", "nope", "--out", str(out)]) == 2
    assert "unknown rule 'nope'" in capsys.readouterr().err


def test_frozen_io_at_a_large_lr_sees_the_depth_lr_exponent(fmnist):
    """With input and readout frozen and a large base LR, (½, 0) — the branch multiplier without Adam's 1/√L —
    is not flat in depth while Depth-μP is (the check the report's coordinate-check section runs)."""
    x, y = fmnist
    verdicts = {}
    for rule in ("depth_mup", "blocks_only"):
        df = coord_check(lambda w, d: dl.MLPResNet(width=w, depth=d), rule, x, y, widths=[64], depths=[4, 32],
                         base_width=64, base_depth=4, steps=40, seeds=[0], lr=2**-4, train_io=False)
        at = df[df["step"] == 40]
        assert (at[at["site"] == "input"]["delta_rms"] == 0).all()  # frozen: the input layer never moves
        verdicts[rule] = coord_verdict(df, "depth", sites=("block_last", "logits"))
    assert verdicts["depth_mup"].verdict == "flat", verdicts["depth_mup"].slopes
    assert verdicts["blocks_only"].verdict == "grows", verdicts["blocks_only"].slopes
    # one block's own change: −1 per doubling under Depth-μP, −½ under (½, 0) (multiplier × LR exponents)
    assert verdicts["depth_mup"].slopes["block_first"] < verdicts["blocks_only"].slopes["block_first"]
