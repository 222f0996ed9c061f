"""What a run depends on: :class:`TrainConfig`, its validation and fingerprint, and the map from a flat point.

Every field is checked on construction (one line per problem, naming the field, what it must be and what was
given); the rule is resolved once here (:attr:`TrainConfig.resolved_rule`) and the plan is built from that
resolution. A flat point (sweep grid point, CLI flags) becomes a config through :func:`config_from_point`:
callers above the trainer build configs through it and never reach back up.

This module loads no torch: every field is checked (type, range, size limits, the rule) before the one check that
needs the models — the model's name and its own options (:func:`_check_model`, which imports them) — so a bad
command line is refused in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.scaling.rules import OPTIMIZERS, Rule, get_rule
from deeplimit.train.model_names import hf_type, is_factory, is_hf

TEXT_MODELS = ("transformer", "shaped-transformer")
IMAGE_DATASETS = ("fashion-mnist", "fashion_mnist", "fmnist", "digits")  # the names the image loader resolves
# Fields that change how often the run saves itself, never what it computes: left out of the fingerprint.
_NOT_IN_FINGERPRINT = ("checkpoint_every", "checkpoint_seconds")
# Fields added later: left out of the fingerprint while unset, so older checkpoints still resume.
_NEW_IF_SET = ("wd_timescale", "wd_timescale_fraction", "diverge_patience")
# Plan options that belong to the rule (get_rule resolves them with alpha and gamma), not to make_plan's HParams.
RULE_PLAN_KEYS = ("eps_scope", "weight_decay_mode")

# Defaults of the byte-level transformer family (Noci et al. 2023 App. D settings at CPU scale).
TEXT_DEFAULTS: dict[str, Any] = dict(optimizer="adamw", data="shakespeare", batch_size=16, seq_len=64,
                                     betas=(0.9, 0.95), warmup_frac=0.05, min_window=20)


@dataclass
class TrainConfig:
    """Everything a run depends on; a run is reproducible from this config alone.

    Every field is type-checked on construction: a bad value is a :class:`DeeplimitError` naming the field,
    what it must be, and the value given.
    """

    model: str = "mlp-resnet"
    width: int = 64
    depth: int = 4
    model_kwargs: dict = field(default_factory=dict)  # e.g. activation, block_depth, n_heads, attention
    rule: str = "depth_mup"
    alpha: float | None = None
    gamma: float | None = None
    base_width: int | None = None
    base_depth: int | None = None
    plan_kwargs: dict = field(default_factory=dict)  # block_mult, input_mult, output_mult, eps_scope, …
    optimizer: str = "adam"
    lr: float = 2**-8
    eps: float = 1e-8
    weight_decay: float = 0.0
    wd_timescale: float | None = None  # weight decay as an EMA timescale τ = 1/(η_g·λ) in steps (instead of λ)
    wd_timescale_fraction: float | None = None  # … or as a fraction of ``steps`` (optimizers spec §4)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0  # SGD's momentum; with optimizer="muon", Muon's (0: torch's default 0.95)
    warmup_frac: float = 0.0  # linear warm-up over this fraction of steps, then constant
    steps: int = 400
    batch_size: int = 128
    seq_len: int = 64  # text models only
    data: str = "fashion-mnist"  # image set name or .npz path; for text models a corpus name or a text file
    data_dir: str | None = None
    train_io: bool = True  # False freezes input and readout (TP6 §10.2 depth-transfer protocol, decision D11)
    seed: int = 0
    window_frac: float = 0.1
    min_window: int = 50
    eval_batches: int = 8  # 0: no held-out evaluation (eval_loss is NaN)
    log_every: int = 10
    # with a run_dir: 0 = a quarter of the run or checkpoint_seconds, whichever first, at most once a second
    checkpoint_every: int = 0
    checkpoint_seconds: float = 30.0
    entropy_every: int = 0  # >0: record per-layer attention entropy on a fixed batch (transformers)
    dtype: str = "float32"
    # Stop early once the train loss has been above the step-0 loss for this many consecutive steps after the
    # warm-up (status "diverged"); None: every run trains all its steps.
    diverge_patience: int | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def is_text(self) -> bool:
        """True for token models (built-in transformers, ``hf:`` causal LMs); a factory's data decides."""
        if is_hf(self.model):
            return True
        if is_factory(self.model):
            return not _is_image_data(self.data)
        return self.model.replace("_", "-") in TEXT_MODELS

    @property
    def is_builtin(self) -> bool:
        """True for the built-in models (sized in closed form, options checked by their own config)."""
        return not (is_hf(self.model) or is_factory(self.model))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error listing the accepted ones."""
        if not isinstance(d, dict):
            raise DeeplimitError(f"a training config must be a mapping of option names to values, got "
                                 f"{type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DeeplimitError(f"unknown training option(s) {unknown}; accepted: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_point(cls, point: dict[str, Any]) -> TrainConfig:
        """Same as :func:`config_from_point`."""
        return config_from_point(point)

    def fingerprint(self) -> str:
        """Hex digest of everything that changes what the run computes, including the content of the data: a
        data file's bytes, or those of the files a named dataset is read from (``fashion-mnist`` under
        ``data_dir`` or ``$DEEPLIMIT_FASHION_MNIST_DIR``, the Shakespeare tarball, …).

        Two configs with the same fingerprint produce the same losses; a checkpoint is resumed only under its
        own fingerprint.
        """
        d = {k: v for k, v in self.to_dict().items()
             if k not in _NOT_IN_FINGERPRINT and not (k in _NEW_IF_SET and v is None)}
        d["data_sha256"] = _data_digest(self)
        if is_factory(self.model):  # an edited factory file builds another model
            from deeplimit.train.models import source_digest

            d["model_sha256"] = source_digest(self.model)
        blob = json.dumps(d, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def resolved_rule(self) -> Rule:
        """The :class:`~deeplimit.scaling.rules.Rule` of this run: ``rule`` with ``alpha``, ``gamma`` and the
        rule's plan options (``eps_scope``, ``weight_decay_mode``) applied. Resolved once, on validation; a field
        changed since is resolved again (the config is a plain, mutable dataclass)."""
        key, rule = self.__dict__.get("_resolved_rule", (None, None))
        if key != _rule_key(self):
            key, rule = _rule_key(self), _resolve_rule(self)
            self.__dict__["_resolved_rule"] = (key, rule)
        return rule

    @property
    def plan_options(self) -> dict[str, Any]:
        """``plan_kwargs`` less the options already folded into :attr:`resolved_rule` (what ``make_plan`` gets)."""
        return {k: v for k, v in self.plan_kwargs.items() if k not in RULE_PLAN_KEYS}


def _rule_key(c: TrainConfig) -> tuple:
    return (c.rule, c.alpha, c.gamma, *(c.plan_kwargs.get(k) for k in RULE_PLAN_KEYS))


def _resolve_rule(c: TrainConfig) -> Rule:
    """The one call of ``get_rule`` for a config: an unknown rule is a DeeplimitError listing the valid ones."""
    return get_rule(c.rule, alpha=c.alpha, gamma=c.gamma, **{k: c.plan_kwargs[k] for k in RULE_PLAN_KEYS
                                                               if c.plan_kwargs.get(k) is not None})


# ------------------------------------------------------------------------------------------------------
# Validation: one line per problem, naming the field, what it must be and what was given.


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(ok: bool, name: str, what: str, value: Any) -> None:
    if not ok:
        raise DeeplimitError(f"training option {name} must be {what}, got {value!r}")


def _validate(c: TrainConfig) -> None:
    for name in ("width", "depth", "steps", "batch_size", "seq_len", "min_window", "log_every"):
        v = getattr(c, name)
        _need(_is_int(v) and v >= 1, name, "a positive integer", v)
    for name in ("seed", "eval_batches", "checkpoint_every", "entropy_every"):
        v = getattr(c, name)
        _need(_is_int(v) and v >= 0, name, "an integer ≥ 0", v)
    # Sizes before work: a typo's extra zeros are refused here, in a millisecond, not after hours or an overflow.
    for name, limit in (("seed", MAX_SEED), ("steps", MAX_STEPS), ("batch_size", MAX_BATCH)):
        v = getattr(c, name)
        _need(v <= limit, name, f"at most {limit:,}", v)
    for name in ("base_width", "base_depth", "diverge_patience"):
        v = getattr(c, name)
        _need(v is None or (_is_int(v) and v >= 1), name, "a positive integer (or unset)", v)
    _need(_is_num(c.lr) and math.isfinite(c.lr) and c.lr > 0, "lr", "a finite positive number", c.lr)
    for name in ("eps", "weight_decay"):
        v = getattr(c, name)
        _need(_is_num(v) and math.isfinite(v) and v >= 0, name, "a finite number ≥ 0", v)
    for name in ("momentum", "warmup_frac"):
        v = getattr(c, name)
        _need(_is_num(v) and 0 <= v < 1, name, "a number in [0, 1)", v)
    _need(_is_num(c.window_frac) and 0 < c.window_frac <= 1, "window_frac", "a number in (0, 1]", c.window_frac)
    _need(_is_num(c.checkpoint_seconds) and c.checkpoint_seconds > 0 and not math.isnan(c.checkpoint_seconds),
          "checkpoint_seconds", "a positive number of seconds (inf: by steps only)", c.checkpoint_seconds)
    for name in ("alpha", "gamma"):
        v = getattr(c, name)
        _need(v is None or (_is_num(v) and math.isfinite(v)), name, "a finite number (or unset)", v)
    betas = c.betas
    _need(isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_is_num(b) and 0 <= b < 1 for b in betas),
          "betas", "two numbers in [0, 1), e.g. (0.9, 0.999)", betas)
    c.betas = (float(betas[0]), float(betas[1]))
    _need(isinstance(c.train_io, bool), "train_io", "True or False", c.train_io)
    _need(c.dtype in ("float32", "float64"), "dtype", "'float32' or 'float64'", c.dtype)
    _need(isinstance(c.optimizer, str) and c.optimizer.lower() in OPTIMIZERS, "optimizer",
          f"one of {', '.join(OPTIMIZERS)}", c.optimizer)
    _need(isinstance(c.data, str) and c.data.strip() != "", "data", "a dataset name or a file path", c.data)
    _need(c.data_dir is None or isinstance(c.data_dir, str), "data_dir", "a folder path (or unset)", c.data_dir)
    for name in ("model_kwargs", "plan_kwargs"):
        v = getattr(c, name)
        _need(isinstance(v, dict) and all(isinstance(k, str) for k in v), name, "a dict of option names", v)
    _need(isinstance(c.rule, str), "rule", "a rule name", c.rule)
    for name, v in c.plan_kwargs.items():
        if _is_num(v) and not math.isfinite(v):
            raise DeeplimitError(f"plan option {name} must be finite, got {v!r}")
        if name in PLAN_BOOL_KEYS:
            _need(isinstance(v, bool), name, "True or False", v)
    # the rule is resolved (and so checked) here, once; the plan is built from this resolution
    c.__dict__["_resolved_rule"] = (_rule_key(c), _resolve_rule(c))
    _check_model(c)
    if c.entropy_every and not (c.is_builtin and c.is_text):
        raise DeeplimitError("entropy_every records the attention entropy of the built-in transformers only; "
                             f"set it to 0 for model {c.model!r}")
    if c.is_text:
        tokens = c.eval_batches * c.batch_size * c.seq_len
        _need(tokens <= MAX_EVAL_TOKENS, "eval_batches",
              f"at most {MAX_EVAL_TOKENS // (c.batch_size * c.seq_len):,} at batch_size {c.batch_size} and seq_len "
              f"{c.seq_len} (the held-out evaluation reads at most {MAX_EVAL_TOKENS:,} tokens)", c.eval_batches)
    if c.is_text and (c.data.lower().endswith((".npz", ".npy", ".gz", ".zip", ".pt"))):
        raise DeeplimitError(f"model {c.model!r} trains on text, but data={c.data!r} is an array/archive file; "
                             "pass a text file or a corpus name (shakespeare, stdlib)")


def _check_model(c: TrainConfig) -> None:
    """The model's name, then its own options (real bools, finite numbers, bounded sizes), checked by its config
    now, so a bad one fails before any data is read; the input/output sizes come from the data later.

    The one check that imports the models (and so torch): it runs after every cheap check, so a bad size, rate or
    rule is refused without loading torch."""
    from deeplimit.nn.registry import MODELS, model_config
    from deeplimit.train.models import check_factory, check_hf

    _need(isinstance(c.model, str) and (c.model.lower().replace("_", "-") in MODELS or is_hf(c.model)
                                         or is_factory(c.model)), "model",
          f"one of {', '.join(sorted(MODELS))}, hf:TYPE (a Hugging Face model type) or pkg.module:factory", c.model)
    if is_hf(c.model):
        check_hf(hf_type(c.model), c.width, c.depth, c.model_kwargs)
    elif is_factory(c.model):
        check_factory(c.model, c.model_kwargs)
    else:
        model_config(c.model, width=c.width, depth=c.depth, **_shape_stub(c), **c.model_kwargs)


def _is_image_data(data: str) -> bool:
    return data in IMAGE_DATASETS or data.lower().endswith(".npz")


def _shape_stub(c: TrainConfig) -> dict:
    """Input/output sizes for validating a model config before the data is read (the real ones replace them)."""
    if c.is_text:
        return {"max_seq_len": c.seq_len}
    return {}


def _data_digest(c: TrainConfig) -> str:
    """SHA-256 of a data file, else the content digest of the files a named dataset is read from: a run keyed
    on this never returns a stale result for other data under the same name (hashed once per process)."""
    from deeplimit.data import CORPORA, content_digest, file_digest

    named = c.data in CORPORA if c.is_text else c.data in IMAGE_DATASETS
    # a name the loader resolves itself is hashed by what it reads, even if a file of that name sits here
    return (None if named else file_digest(c.data)) or content_digest(c.data, c.data_dir, text=c.is_text)


# ------------------------------------------------------------------------------------------------------
# A flat point (sweep grid point, CLI flags) → TrainConfig. The trainer owns this map: callers above it
# (sweeps, the CLI, reports) build configs through it and never reach back up.

MAX_SEED = 2**32 - 1  # numpy's and most libraries' seed range; the text batch seed seed·1000003 + t stays < 2^63
MAX_STEPS = 10**8
MAX_BATCH = 2**24
MAX_EVAL_TOKENS = 10**8  # held-out tokens per evaluation (text); image sets are capped by their test split
PLAN_BOOL_KEYS = frozenset({"readout_zero_init", "decay_vectors"})

MODEL_KEYS = frozenset({
    "activation", "block_depth", "block", "mean_subtract", "pre_ln", "bias",  # MLP-ResNet
    "n_heads", "mlp_ratio", "norm", "attention", "logit_scale", "attn_mult", "tau0", "tau_mode", "shaping",
    "recover_steps", "c_plus", "c_minus", "residual", "residual_gamma", "residual_trainable",
    "zero_query_init",  # transformers
})
PLAN_KEYS = frozenset({"block_mult", "input_mult", "output_mult", "sigma_in", "sigma_hidden", "sigma_out",
                       "sigma_emb", "readout_zero_init", "decay_vectors", "eps_scope", "weight_decay_mode",
                       "muon_lr_ratio"})
IGNORED_KEYS = frozenset({"experiment", "variant"})
TRAIN_KEYS = frozenset(f.name for f in fields(TrainConfig)) - {"model_kwargs", "plan_kwargs"}


def _bool_fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.type in ("bool", bool)}


def __getattr__(name: str) -> Any:
    """``BOOL_KEYS``: the yes/no options of the trainer, the models and the plan (the CLI parses these strictly:
    true/false/yes/no/1/0), computed on first use (PEP 562) because the models' configs live with the models,
    which import torch."""
    if name == "BOOL_KEYS":
        from deeplimit.nn.mlp_resnet import MLPResNetConfig
        from deeplimit.nn.transformer import TransformerConfig

        value = frozenset(_bool_fields(TrainConfig) | PLAN_BOOL_KEYS
                          | ((_bool_fields(MLPResNetConfig) | _bool_fields(TransformerConfig)) & MODEL_KEYS))
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Old spellings of a flat key → (the one spelling, how the value maps); each use warns once per call.
DEPRECATED_KEYS: dict[str, tuple[str, Any]] = {
    "heads": ("n_heads", lambda v: v),
    "freeze_io": ("train_io", lambda v: (not v) if isinstance(v, bool) else v),
}
# A Hugging Face config's names of width and depth: for hf: models they set width and depth.
HF_SIZE_KEYS = {"hidden_size": "width", "num_hidden_layers": "depth"}


def config_from_point(point: dict[str, Any]) -> TrainConfig:
    """Map a flat dict to a :class:`TrainConfig`.

    Keys: ``TrainConfig`` fields (``width``, ``depth``, ``steps``, ``seed``, ``data``, …) plus ``preset``
    (alias of ``rule``), ``log2_lr`` (``lr = 2**log2_lr``), model options (:data:`MODEL_KEYS`, go to
    ``model_kwargs``), plan options (:data:`PLAN_KEYS`, go to ``plan_kwargs``) and labels ignored by training
    (``experiment``, ``variant``). For an ``hf:`` or factory model every other key is a model option (a config
    field, a factory keyword), and ``hidden_size`` / ``num_hidden_layers`` of an ``hf:`` model are its width and
    depth. Unknown keys are errors listing the accepted names, so a typo never silently trains the default.
    Old spellings (:data:`DEPRECATED_KEYS`: ``heads``, ``freeze_io``) still work and warn (``FutureWarning``).
    """
    if "lr" in point and "log2_lr" in point:
        raise DeeplimitError("give either lr or log2_lr, not both")
    model = point.get("model", TrainConfig.model)
    custom = is_hf(model) or is_factory(model)
    train_kw: dict[str, Any] = {}
    model_kw: dict[str, Any] = {}
    plan_kw: dict[str, Any] = {}
    for key, value in point.items():
        if key in DEPRECATED_KEYS:
            new, convert = DEPRECATED_KEYS[key]
            if new in point:
                raise DeeplimitError(f"give {new} only ({key} is its old spelling), not both")
            hint = f"{new}={convert(value)}" if key == "freeze_io" else f"{new}=…"
            warnings.warn(f"training option {key} is deprecated: write {hint} (same meaning)", FutureWarning,
                          stacklevel=2)
            key, value = new, convert(value)
        if is_hf(model) and key in HF_SIZE_KEYS:
            size = HF_SIZE_KEYS[key]
            if size in point and point[size] != value:
                raise DeeplimitError(f"{key}={value!r} and {size}={point[size]!r} disagree: for an hf: model "
                                     f"{key} is the {size}; give one of them")
            key = size
        if key == "preset":
            train_kw["rule"] = value
        elif key == "log2_lr":
            _need(_is_num(value) and math.isfinite(value), "log2_lr", "a finite number", value)
            train_kw["lr"] = 2.0 ** float(value)
        elif key in TRAIN_KEYS:
            train_kw[key] = value
        elif key in PLAN_KEYS:
            plan_kw[key] = value
        elif key in MODEL_KEYS or (custom and key not in IGNORED_KEYS):
            model_kw[key] = value
        elif key not in IGNORED_KEYS:
            raise DeeplimitError(f"unknown training option {key!r}; accepted: preset, log2_lr, "
                                 f"{', '.join(sorted(TRAIN_KEYS | MODEL_KEYS | PLAN_KEYS | IGNORED_KEYS))}")
    return TrainConfig(model_kwargs=model_kw, plan_kwargs=plan_kw, **train_kw)


def family_defaults(model: str) -> dict[str, Any]:
    """Defaults that differ by model family (byte-level transformers and hf: causal LMs: AdamW, batch 16,
    warm-up, …)."""
    return dict(TEXT_DEFAULTS) if is_hf(model) or model.replace("_", "-") in TEXT_MODELS else {}
