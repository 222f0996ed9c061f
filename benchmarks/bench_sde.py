"""Covariance-SDE engine benchmark (spec §5): matrix-free EM vs torchsde vs a naive p×p eigen step.

All peers integrate the same SDE (full block, §3.5: γ = 1/√8, τ0 = 1, c± = (0, −1)) with Euler–Maruyama at
the same step, so they have the same accuracy; throughput is ``paths·steps/s`` on one thread.

* ours: :func:`deeplimit.sde.solve` (a Cholesky and three GEMMs per path and step, 8⅓ m³ flops;
  :mod:`deeplimit.sde.step`);
* torchsde: ``sdeint(method="euler")`` on the flattened upper triangle (state ``p = m(m+1)/2``) with
  "general" noise of dimension ``2m²`` — the equivalent SDE of spec §5.1 item 4 (diffusion matrix ``p ×
  2m²``);
* naive: forms ``Σ(V)`` (p×p) and eigendecomposes it per path and step (``O(m⁶)``).

Also: SDE vs finite-network sampling cost (gram / cheap / explicit samplers) at n = 200 and 2000, and the
FLOP rate of our step at m ≥ 128 against a plain batched m×m matmul loop timed in the same run.

Timing: the one method of ``benchmarks.common``; speed-ups are medians of paired per-round ratios. The peers draw
independent noise, so their outputs are not compared value by value: they integrate the same SDE at the same step
by construction. The large-m runs (m ≥ 128) use a smaller step than the peers' h = 0.01 (recorded as ``h``, see
``large_m_step``): at h = 0.01 the paths leave the PSD cone there.
"""

from __future__ import annotations

import math
import sys
import time
from functools import partial

import numpy as np
import torch

from benchmarks.common import paired_ratio, paired_rounds, setup_threads
from deeplimit.sde import Euler, Scenario, psd_sqrt, sample_network, solve
from deeplimit.sde._index import naive_em_step
from deeplimit.sde.scenarios import equicorrelated

NAME = "sde"
SC = Scenario("block", 1 / math.sqrt(8), 1.0, 0.0, -1.0)
H = 0.01


def start(m: int) -> torch.Tensor:
    return equicorrelated(m, 0.2)


def ours(
    m: int,
    paths: int,
    steps: int,
    noise_dtype: torch.dtype | None = None,
    h: float = H,
    dtype: torch.dtype = torch.float64,
):
    return solve(SC, Euler(), 0.0, steps * h, h, start(m), paths=paths, seed=0, noise_dtype=noise_dtype, dtype=dtype)


def naive(m: int, paths: int, steps: int) -> None:
    V = start(m).expand(paths, m, m).clone()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        V = naive_em_step(SC, V, H, g)
        V = 0.5 * (V + V.mT)


class _TorchsdeBlock(torch.nn.Module):
    """The block SDE on the flattened upper triangle with general noise ``g(y) ∈ R^{p × 2m²}`` (§5.1 item
    4)."""

    noise_type = "general"
    sde_type = "ito"

    def __init__(self, m: int) -> None:
        super().__init__()
        self.m = m
        self.iu = torch.triu_indices(m, m)

    def _V(self, y: torch.Tensor) -> torch.Tensor:
        V = torch.zeros(y.shape[0], self.m, self.m, dtype=y.dtype)
        V[:, self.iu[0], self.iu[1]] = y
        return V + V.mT - torch.diag_embed(torch.diagonal(V, dim1=-2, dim2=-1))

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return SC.drift(self._V(y))[:, self.iu[0], self.iu[1]]

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        V = self._V(y)
        m = self.m
        L, _ = psd_sqrt(V)
        LM = V @ (L - L.mean(dim=-2, keepdim=True))
        a, b = self.iu
        # coefficient of G_ij in ξ^{αβ}: c (R^{αi} L^{βj} + R^{βi} L^{αj}) with R = L (linear) or L_M
        # (attention)
        lin = math.sqrt(SC.kappa_lin / 2) * (
            torch.einsum("nai,nbj->nabij", L, L) + torch.einsum("nbi,naj->nabij", L, L)
        )
        att = (math.sqrt(SC.kappa_att) / m) * (
            torch.einsum("nai,nbj->nabij", LM, L) + torch.einsum("nbi,naj->nabij", LM, L)
        )
        B = y.shape[0]
        return torch.cat([lin[:, a, b].reshape(B, -1, m * m), att[:, a, b].reshape(B, -1, m * m)], dim=-1)


def tsde(m: int, paths: int, steps: int) -> None:
    import torchsde

    sde = _TorchsdeBlock(m)
    iu = torch.triu_indices(m, m)
    y0 = start(m)[iu[0], iu[1]].expand(paths, -1).clone()
    ts = torch.tensor([0.0, steps * H], dtype=torch.float64)
    with torch.no_grad():
        torchsde.sdeint(sde, y0, ts, method="euler", dt=H)


def step_flops(m: int) -> float:
    """FLOPs of one of our steps per path: Cholesky m³/3, ``L [G1 | G2]`` (4m³), ``V · P L G2`` and
    ``Q Lᵀ`` (2m³ each); the O(m²) elementwise work is not counted."""
    return (1 / 3 + 8) * m**3


def run(quick: bool) -> dict:
    setup_threads()
    reps = 3 if quick else 5
    rec: dict = {
        "scenario": "block, gamma=1/sqrt(8), tau0=1, c=(0,-1), dt=0.01",
        "large_m_step": "h = 1/(160 kappa_lin m) at m >= 128 (h = 0.01 leaves the PSD cone there); see flops[*].h",
        "settings": {"rounds": reps, "outputs": "not compared: peers draw independent noise"},
        "peers": {},
        "network": {},
        "flops": {},
    }
    t_start = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[bench sde {time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    # -- peers at small m: same SDE, same step
    sizes = {2: (16, 2), 8: (8, 2)} if quick else {2: (1024, 20), 8: (1024, 10), 32: (16, 2)}
    for m, (paths, steps) in sizes.items():
        peers = {
            "ours": partial(ours, m, paths, steps),
            "ours_f32_noise": partial(ours, m, paths, steps, torch.float32),
            "torchsde": partial(tsde, m, paths, steps),
            "naive_eig": partial(naive, m, paths, steps),
        }
        t = paired_rounds(peers, repeats=reps)
        row = {
            k: {"median_s": v["median_s"], "paths_steps_per_s": paths * steps / v["median_s"]}
            for k, v in t.items()
        }
        for k in ("torchsde", "naive_eig"):
            row[f"speedup_vs_{k}"] = paired_ratio(t, k, "ours")
            row[f"speedup_f32_noise_vs_{k}"] = paired_ratio(t, k, "ours_f32_noise")
        row.update(paths=paths, steps=steps)
        rec["peers"][f"m={m}"] = row
        progress(
            f"peers m={m}: "
            + ", ".join(f"{k} {v['paths_steps_per_s']:.0f}/s" for k, v in row.items() if isinstance(v, dict))
        )
    # -- ours alone at large m, and FLOP rate vs a plain matmul loop
    large = {128: (2, 2)} if quick else {128: (256, 100), 512: (8, 5)}
    for m, (paths, steps) in large.items():
        # h = 0.01 (the paper's step) leaves the PSD cone at large m: the noise's relative spectral size is
        # ≈ 2 sqrt(κ_lin h m) and the smallest eigenvalues decay on the time scale 1/(κ_lin m). The large-m
        # runs use h = 1/(160 κ_lin m), at which 100 steps stay PSD (every step takes the Cholesky path).
        h = 1 / (160 * SC.kappa_lin * m)
        res = {}
        for tag, nd, dt_ in (("float64", None, torch.float64), ("float32", torch.float32, torch.float32)):
            t0 = time.perf_counter()
            sol = ours(m, paths, steps, nd, h, dt_)
            res[tag] = {
                "wall_s": time.perf_counter() - t0,
                "paths_with_clipping": int((sol.clipped > 0).sum()),
            }
            progress(f"m={m}: {paths} paths x {steps} steps ({tag}) in {res[tag]['wall_s']:.1f}s")
        wall = res["float64"]["wall_s"]
        A = torch.randn(paths, m, m, dtype=torch.float64)
        Bm = torch.randn(paths, m, m, dtype=torch.float64)
        n_mm = 4  # about as many matmul FLOPs as one step (8⅓ m³)

        def mm_loop(A: torch.Tensor = A, Bm: torch.Tensor = Bm, n_mm: int = n_mm) -> None:
            for _ in range(n_mm):
                torch.bmm(A, Bm)

        An, Bn = A.numpy(), Bm.numpy()

        def mm_loop_numpy(An: np.ndarray = An, Bn: np.ndarray = Bn, n_mm: int = n_mm) -> None:
            for _ in range(n_mm):
                np.matmul(An, Bn)

        # FLOP rate of a step from the (positive definite) start, where every path takes the Cholesky path
        tt = paired_rounds({"step": partial(ours, m, paths, 1, None, h), "step_f32_noise":
                            partial(ours, m, paths, 1, torch.float32, h), "torch": mm_loop, "numpy": mm_loop_numpy},
                           repeats=reps)
        step_t, step_t32 = tt["step"]["median_s"], tt["step_f32_noise"]["median_s"]
        mm = {k: tt[k] for k in ("torch", "numpy")}
        # the reference is the faster of the two BLAS on this core (MKL via torch, OpenBLAS via NumPy)
        mm_t = min(v["median_s"] for v in mm.values())
        ours_rate = paths * step_flops(m) / step_t
        mm_rate = paths * n_mm * 2 * m**3 / mm_t
        mm_rates = {k: paths * n_mm * 2 * m**3 / v["median_s"] / 1e9 for k, v in mm.items()}
        rec["flops"][f"m={m}"] = {
            "paths": paths,
            "steps": steps,
            "h": h,
            "runs": res,
            "fraction_of_matmul_f32_noise": paths * step_flops(m) / step_t32 / mm_rate,
            "wall_s_full_run": wall,
            "paths_steps_per_s": paths * steps / wall,
            "our_gflops": ours_rate / 1e9,
            "matmul_gflops": mm_rate / 1e9,
            "matmul_gflops_by_blas": mm_rates,
            "fraction_of_matmul": ours_rate / mm_rate,
        }
    # -- SDE vs finite-network sampling cost (block, m = 3, per path and layer)
    widths = (200,) if quick else (200, 2000)
    for n in widths:
        paths, d = (8, 2) if quick else (64, 4)
        # explicit weights cost 5 n² normals per path and block: only a couple of paths at n = 2000
        p_exp = paths if n <= 200 else 2
        V0 = start(3)

        def net(method: str, p: int, n: int = n, d: int = d, V0: torch.Tensor = V0) -> None:
            sample_network("block", n, d, V0, paths=p, method=method)

        fns = {
            "sde_step": lambda d=d, V0=V0, p=paths: solve(SC, Euler(), 0.0, d * H, H, V0, paths=p, seed=0),
            "gram_sampler": lambda p=paths: net("gram", p),
            "cheap_sampler": lambda p=paths: net("cheap", p),
        }
        if n <= 200 or not quick:
            fns["explicit_weights"] = lambda p=p_exp: net("explicit", p)
        t = paired_rounds(fns, repeats=2 if n > 200 else reps, warmup=0 if n > 200 else 1)
        row = {}
        for k, v in t.items():
            p = p_exp if k == "explicit_weights" else paths
            row[k] = {"us_per_path_layer": 1e6 * v["median_s"] / (p * d)}
        base = row["sde_step"]["us_per_path_layer"]
        for k in row:
            row[k]["ratio_vs_sde"] = row[k]["us_per_path_layer"] / base
        rec["network"][f"n={n}"] = row
        progress(
            f"network n={n}: " + ", ".join(f"{k} {v['us_per_path_layer']:.1f}us" for k, v in row.items())
        )
    # -- summary
    m8 = rec["peers"]["m=8"]
    summ = {
        "m8_speedup_vs_torchsde": m8.get("speedup_vs_torchsde"),
        "m8_speedup_vs_naive_eig": m8.get("speedup_vs_naive_eig"),
        "m8_speedup_f32_noise_vs_torchsde": m8.get("speedup_f32_noise_vs_torchsde"),
        "m8_speedup_f32_noise_vs_naive_eig": m8.get("speedup_f32_noise_vs_naive_eig"),
        "m8_ours_paths_steps_per_s": m8["ours"]["paths_steps_per_s"],
    }
    if "m=128" in rec["flops"]:
        f = rec["flops"]["m=128"]
        summ["m128_run_s"] = f["wall_s_full_run"]
        summ["m128_run"] = f"{f['paths']} paths x {f['steps']} steps"
        summ["m128_step_h"] = f["h"]
        summ["m128_fraction_of_matmul_flops"] = f["fraction_of_matmul"]
        summ["m128_fraction_of_matmul_flops_f32_noise"] = f["fraction_of_matmul_f32_noise"]
        summ["m128_run_s_float32"] = f["runs"]["float32"]["wall_s"]
    if "m=512" in rec["flops"]:
        summ["m512_fraction_of_matmul_flops"] = rec["flops"]["m=512"]["fraction_of_matmul"]
    for n, row in rec["network"].items():
        summ[f"{n}_us_per_path_layer"] = {k: round(v["us_per_path_layer"], 2) for k, v in row.items()}
    goals = {
        "m8_vs_torchsde>=50": (summ["m8_speedup_vs_torchsde"] or 0) >= 50,
        "m8_vs_naive>=20": (summ["m8_speedup_vs_naive_eig"] or 0) >= 20,
    }
    if not quick:
        goals["m128_256x100<60s"] = summ["m128_run_s"] < 60
        goals["flops>=30%"] = summ["m128_fraction_of_matmul_flops"] >= 0.3
    summ["goals_met"] = goals
    rec["summary"] = summ
    return rec
