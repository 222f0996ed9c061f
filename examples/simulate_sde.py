"""Simulate the covariance SDE of a shaped Transformer and ask: is my configuration stable before I train it?

    python examples/simulate_sde.py           # 2048 paths
    python examples/simulate_sde.py --quick   # what CI runs
"""

import argparse

import torch

import deeplimit.sde as sde
from deeplimit.data import ByteCorpus
from deeplimit.nn.transformer import SHAPED, TransformerConfig, TransformerLM


def main(quick: bool) -> None:
    torch.set_num_threads(1)
    paths = 256 if quick else 2048

    # 1. the limiting SDE of a shaped attention layer (Noci et al. 2023, Thm. 4.2), matrix-free noise
    V0 = sde.equicorrelated(m=3, rho0=0.2)
    # solve(terms, solver, t0, t1, dt0, y0, ...) as in diffrax; dt0=None picks the step rule of spec §5.4
    sol = sde.solve(sde.Scenario("attention", gamma=0.35, tau0=1.0), sde.Euler(), 0.0, 0.75, None, V0,
                    paths=paths, seed=0)
    rho = sde.correlation(sol.terminal)[:, 0, 1]
    print(f"attention SDE: terminal rho^12 mean {rho.mean():.3f}, 10-90% [{rho.quantile(0.1):.3f}, "
          f"{rho.quantile(0.9):.3f}], exit fraction {sol.exit_fraction:.3f}")

    # 2. the same law from the exact finite-network sampler, and a KS distance
    net = sde.sample_network("attention", n=200, d=150, V0=V0, gamma=0.35, tau0=1.0, paths=paths, seed=1)
    print(sde.compare_distributions(sol.survivors(), net.survivors(), (("rho", 0, 1),), bootstrap=50))

    # 3. predict a real model from its embeddings of real text: output covariance and the chance of blow-up
    cfg = TransformerConfig(width=64, depth=8, n_heads=1, residual_gamma=0.35, max_seq_len=8, **SHAPED)
    model = TransformerLM(cfg)
    x, _ = ByteCorpus.load("stdlib").get_batch("train", 1, 8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        X = model.tok(x[0]) + model.pos(torch.arange(8))  # (m, n) token embeddings
    pred = sde.predict(X, d=cfg.depth, gamma=cfg.residual_gamma, tau0=cfg.tau0, kind="block",
                       paths=paths, seed=0)
    print(f"prediction for a {cfg.depth}-block shaped model: P(leave the stable band) = "
          f"{pred.exit_probability:.3f}")
    print(pred.quantiles.head())


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
