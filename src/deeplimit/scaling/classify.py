"""Structural facts about a model, before any rule is applied: roles, blocks, multiplier sites, attention.

One walk over the model's modules answers, for every *tensor* (a tied weight is one tensor under two names):
which role it has (depth-mup spec §4: input, hidden, readout, vector; a MoE ``router``; ``keep``), whether it is
in a residual block, its fans and init kind; and, for every module, which forward multiplier it carries (branch,
input, readout or router) and whether its own ``forward`` reads it or a deeplimit hook applies it.

Where roles come from, first match wins:

1. ``roles={"pattern": role}`` given to ``make_plan`` (fnmatch on canonical names);
2. the model's :class:`~deeplimit.scaling.structure.Structure` ``roles``;
3. the module's ``dl_roles`` (deeplimit's layers, :func:`deeplimit.nn.declare_roles`);
4. the Structure's ``readouts`` (their weight; other parameters there are vectors) and ``inputs`` (every
   matrix at or below an input module is input-role: a ViT's patch projection, class token, position table);
5. types: expert stacks → hidden with per-expert fans and their routers → router (:mod:`.moe`), depthwise
   convolutions, norms and 1-D tensors → vector, ``nn.Embedding`` → input, other matrices inside a block → hidden;
6. with ``base=``: the dims that differ from the base model (as ``mup.set_base_shapes``).

An undeclared parameter the defaults could only guess (:mod:`.special`: Mamba's ``A_log``, an unknown 3-D tensor,
a grouped convolution) is an error naming every such parameter and the ``roles=`` declaration that fixes it.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Collection, Mapping, Set
from dataclasses import dataclass, field

import torch
from torch import nn

from deeplimit.errors import DeeplimitError
from deeplimit.nn.attention import MultiHeadAttention
from deeplimit.scaling import hf, moe, special
from deeplimit.scaling.declared import declared_attr, get_structure
from deeplimit.scaling.names import canonical_name, join, modules_by_name
from deeplimit.scaling.shapes import base_width_mults, fans, is_transposed, role_from_mults
from deeplimit.scaling.special import PLAN_ROLES, is_depthwise
from deeplimit.scaling.structure import Structure

NORMS = tuple(t for t in (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                          getattr(nn, "RMSNorm", None)) if t is not None)


@dataclass
class ParamSite:
    """One tensor of the model: its role and shape facts (multipliers filled in by :mod:`shapes`)."""

    name: str  # canonical name under which ``named_parameters`` yields it (its first occurrence)
    aliases: tuple[str, ...]  # other names of the same tensor (tied weights)
    role: str
    in_block: bool
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    init: str  # "normal" | "zeros" | "ones" | "keep"
    init_mult: float  # extra std factor declared by the module (``dl_init_mult``, e.g. zero queries: 0)
    kind: str | None  # "embedding" | "norm" | "readout_bias" | None
    fan_in_mult: float = 1.0
    fan_out_mult: float = 1.0


@dataclass(frozen=True)
class MultiplierSite:
    """A module that carries a forward multiplier.

    ``attr`` is read by the module's own forward (``branch_mult``, ``input_mult``, ``output_mult``) or, for a
    ``dl_``-prefixed name, by a deeplimit hook. ``weight`` names the readout's tensor (its m_N sets 1/m_N).
    """

    module: str
    kind: str  # "branch" | "input" | "readout" | "router"
    attr: str
    weight: str | None = None


@dataclass(frozen=True)
class AttentionSite:
    """An attention module: heads, and either the attribute the plan sets or the model's own config."""

    module: str
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scale_attr: str | None  # the plan sets it; None: the module applies its own scale
    own_scale: float  # the model's own logit scale (c/√d)
    config: str | None = None  # deeplimit's MultiHeadAttention: its config-driven ``logit_scale``


@dataclass(frozen=True)
class _Occurrence:
    """One name under which a tensor appears (a tied tensor has several), with what that name says about it."""

    name: str
    module_name: str
    pname: str
    module: nn.Module
    p: torch.Tensor
    in_block: bool
    layout: str  # "linear" | "transposed" | "table" | "experts" | "experts_transposed" | "experts_vector"
    base_mults: tuple[float, float] | None
    role: str | None


@dataclass
class Layout:
    params: list[ParamSite]
    unresolved: list[str]
    multipliers: list[MultiplierSite]
    attention: list[AttentionSite]
    blocks: dict[str, int]
    family: str | None
    structure: Structure | None = None
    notes: list[str] = field(default_factory=list)


def _under(name: str, prefixes: Collection[str]) -> bool:
    """True if module ``name`` is one of ``prefixes`` or lies below one (the root ``""`` never counts).

    Walks up the name's own dotted ancestors and looks each up, so a model with L blocks costs O(name depth)
    per call instead of O(L): classification stays linear in depth (issue 22.6).
    """
    lookup = prefixes if isinstance(prefixes, Set | Mapping) else frozenset(prefixes)
    while name:
        if name in lookup:
            return True
        name = name.rpartition(".")[0]
    return False


def _block_of(name: str, blocks: Mapping[str, int]) -> str | None:
    """The residual block module ``name`` lies in (walking up its dotted ancestors), or None."""
    while name:
        if name in blocks:
            return name
        name = name.rpartition(".")[0]
    return None


def _refuse_shared_across_blocks(model: nn.Module, blocks: Mapping[str, int]) -> None:
    """One tensor used by several residual blocks (a shared ``nn.Linear``) gets one init, LR and depth factor,
    while the rule gives each block's branch its own: say so before a plan is built (otherwise the plan's own
    consistency check later reads it as "the plan does not match the model", which contradicts itself). A shared
    module is listed once by ``named_modules()``, so every path to it is walked here."""
    if len(blocks) < 2:
        return
    owners: dict[int, dict[str, str]] = {}  # tensor → block → one name of the tensor there
    for mname, module in model.named_modules(remove_duplicate=False):
        block = _block_of(mname, blocks)
        if block is None:
            continue
        for pname, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), {}).setdefault(block, join(mname, pname))
    for by_block in owners.values():
        if len(by_block) > 1:
            names, where = list(by_block.values()), sorted(by_block)
            raise DeeplimitError(
                f"{names[0]} is one tensor shared by {len(where)} residual blocks ({', '.join(where[:4])}"
                f"{', …' if len(where) > 4 else ''}; also named {', '.join(names[1:4])}); a depth rule scales each "
                "block's branch on its own, so a shared weight has no single depth factor. Give every block its "
                "own module (build a new nn.Linear per block, e.g. copy.deepcopy)")


def _blocks(modules: dict[str, nn.Module], structure: Structure | None) -> dict[str, int]:
    own = {n: int(m.dl_block_depth) for n, m in modules.items() if getattr(m, "dl_block_depth", None) is not None}
    declared = dict(structure.blocks) if structure is not None else {}
    both = sorted(set(own) & set(declared))
    if both:
        raise DeeplimitError(f"block(s) {both[:4]} are declared twice, by their class (dl_block_depth, which applies "
                             "its own branch multiplier) and by the Structure; remove them from Structure.blocks")
    for name in own:
        if not hasattr(modules[name], "branch_mult"):
            raise DeeplimitError(
                f"residual block {name!r} declares dl_block_depth but has no float attribute 'branch_mult' used in "
                "its forward; wrap the branch in deeplimit.nn.Residual(branch, block_depth=k), or describe the "
                "model with a deeplimit.Structure (branches get a hook)")
    if structure is not None:
        bare = sorted(set(declared) - set(structure.branches.values()))
        if bare:
            raise DeeplimitError(f"Structure block(s) {bare[:4]} have no branch, so the branch multiplier a*m_L^-alpha "
                                 "would never be applied; name the modules whose outputs are added to the residual "
                                 "stream: branches={'<block>.attn': '<block>', '<block>.mlp': '<block>'}")
    return {**own, **declared}


def _layout(module: nn.Module, mname: str, pname: str, p: torch.Tensor, structure: Structure | None,
            transposed: set[str]) -> str:
    """How a parameter's dims are stored: ``linear`` (out, in, …), ``transposed`` (in, out), ``table``, or
    stacked experts (``experts``, ``experts_transposed``, ``experts_vector``; :mod:`.moe`)."""
    if isinstance(module, nn.Embedding) and pname == "weight":
        return "table"
    if structure is not None and mname in structure.inputs and pname != "weight" and p.ndim >= 2:
        return "table"  # e.g. a ViT's position embeddings (1, P, n) and class token (1, 1, n)
    if pname == "weight" and (mname in transposed or is_transposed(module)):
        return "transposed"
    return moe.expert_param_layout(module, pname, p) or "linear"


def _match(name: str, patterns: Mapping[str, str]) -> str | None:
    for pattern, role in patterns.items():
        if fnmatch.fnmatchcase(name, pattern):
            return role
    return None


@dataclass(frozen=True)
class _Context:
    """Per-model facts the role of each parameter is read against (one walk, so classification is linear)."""

    overrides: Mapping[str, str]
    structure: Structure | None
    inputs: frozenset[str]
    routers: frozenset[str]
    family_init: bool  # parameters a module defines itself have a family-specific init (Hugging Face)


def _declared_role(name: str, pname: str, module: nn.Module, mname: str, p: torch.Tensor, ctx: _Context
                   ) -> str | None:
    """The role a declaration gives (``roles=``, the Structure, ``dl_roles``, declared inputs/readouts)."""
    structure = ctx.structure
    role = _match(name, ctx.overrides)
    if role is None and structure is not None:
        role = _match(name, structure.roles)
    if role is None:
        role = (getattr(module, "dl_roles", None) or {}).get(pname)
    if role is None and structure is not None and mname in structure.readouts:
        role = "vector" if p.ndim <= 1 else "readout"
    if role is None and _under(mname, ctx.inputs) and not isinstance(module, NORMS):
        role = "vector" if p.ndim <= 1 else "input"  # e.g. a ViT's patch projection inside its embeddings
    if role is not None and role not in PLAN_ROLES:
        raise DeeplimitError(f"role {role!r} for {name} is unknown; roles are {PLAN_ROLES}")
    return role


def _default_role(pname: str, module: nn.Module, mname: str, p: torch.Tensor, in_block: bool, layout: str,
                  ctx: _Context, base_mults: tuple[float, float] | None) -> str | None:
    """The role types and places give an undeclared parameter (``None``: unknown)."""
    if layout in ("experts", "experts_transposed"):
        return "hidden"  # E stacked hidden matrices, fans per expert (scaling/moe.py)
    if layout == "experts_vector":
        return "vector"
    if mname in ctx.routers and pname == "weight":
        return "router"
    if is_depthwise(module) and pname == "weight":
        return "vector"  # fan-in kernel_size (finite): only the channels scale (scaling/special.py)
    if isinstance(module, NORMS) or p.ndim <= 1:
        return "vector"
    if isinstance(module, nn.Embedding):
        return "input"
    if in_block:
        return "hidden"
    if base_mults is not None:
        return role_from_mults(*base_mults)
    return None


def _combine(name: str, aliases: list[str], roles: list[str | None]) -> str | None:
    """One role for a tensor seen under several names; input + readout is a tied embedding (input role)."""
    known = set(r for r in roles if r is not None)
    if not known or None in roles:
        return None
    if len(known) == 1:
        return known.pop()
    if known == {"input", "readout"}:
        return "input"
    raise DeeplimitError(f"{name} is one tensor under the names {[name, *aliases]} with conflicting roles "
                         f"{sorted(known)}; only an input embedding tied to a readout may have two roles — untie "
                         "the weights or declare one role with roles={'<name>': '<role>'}")


def classify(model: nn.Module, overrides: Mapping[str, str] | None = None, base: dict | None = None) -> Layout:
    """Roles, blocks, multiplier sites and attention sites of ``model`` (see the module docstring).

    ``base`` is the base model's ``{name: shape}`` (``shapes.base_shapes``) when given.
    """
    structure = get_structure(model)
    modules = modules_by_name(model)
    blocks = _blocks(modules, structure)
    transposed_names = set(structure.transposed) if structure is not None else set()
    experts = {n: moe.n_experts(m) for n, m in modules.items() if moe.experts_layout(m) is not None}
    ctx = _Context(dict(overrides or {}), structure, frozenset(structure.inputs if structure is not None else ()),
                   frozenset(moe.router_modules(modules, {n: e for n, e in experts.items() if e is not None})),
                   _family_init(model))

    # every occurrence of every tensor, in named_parameters order (first occurrence = its plan name)
    occurrences: dict[int, list[_Occurrence]] = {}
    doubtful: dict[str, str] = {}  # name → why it cannot be classified with certainty (scaling/special.py)
    for mname, module in modules.items():
        for pname, p in module.named_parameters(recurse=False):
            name, in_block = join(mname, pname), _under(mname, blocks)
            layout = _layout(module, mname, pname, p, structure, transposed_names)
            base_mults = base_width_mults(name, p, layout, base) if base is not None else None
            role = _declared_role(name, pname, module, mname, p, ctx)
            if role is None:
                known = layout.startswith("experts") or (mname in ctx.routers and pname == "weight")
                reason = special.uncertain(module, pname, p, in_block, ctx.family_init, known)
                if reason is not None:
                    doubtful[name] = reason
                role = _default_role(pname, module, mname, p, in_block, layout, ctx,
                                     base_mults if not in_block else None)
            occurrences.setdefault(id(p), []).append(
                _Occurrence(name, mname, pname, module, p, in_block, layout, base_mults, role))
    doubtful.update(_family_biases(occurrences, doubtful, ctx, modules))
    if doubtful:
        raise special.refuse(doubtful)
    _refuse_shared_across_blocks(model, blocks)

    sites: list[ParamSite] = []
    unresolved: list[str] = []
    for occ in occurrences.values():
        first = occ[0]
        role = _combine(first.name, [o.name for o in occ[1:]], [o.role for o in occ])
        if role is None:
            unresolved += [o.name for o in occ if o.role is None] or [first.name]
            continue
        # the occurrence that owns the combined role decides fans and init (a tied table is an embedding)
        own = next(o for o in occ if o.role == role)
        if role == "keep":  # declared: its own init, whatever its type
            kind, init = None, "keep"
        elif isinstance(own.module, NORMS):
            kind, init = "norm", ("ones" if own.pname == "weight" else "zeros")
        elif role == "vector":
            kind, init = None, ("zeros" if own.pname == "bias" else "keep")
        else:
            kind, init = ("embedding" if own.layout == "table" and role == "input" else None), "normal"
        fan_in, fan_out = fans(own.p, own.layout)
        init_mult = float((getattr(own.module, "dl_init_mult", None) or {}).get(own.pname, 1.0))
        site = ParamSite(first.name, tuple(o.name for o in occ[1:]), role, any(o.in_block for o in occ),
                         tuple(own.p.shape), fan_in, fan_out, init, init_mult, kind)
        if own.base_mults is not None:
            site.fan_in_mult, site.fan_out_mult = (1.0, 1.0) if role == "keep" else own.base_mults
        sites.append(site)
    occ_roles = {o.name: (o.module_name, o.role) for occ in occurrences.values() for o in occ}

    # a readout's bias has d_out entries: a finite dim (m_N = 1)
    readout_modules = {m for m, r in occ_roles.values() if r == "readout"}
    for site in sites:
        owner = occ_roles[site.name][0]
        if site.role == "vector" and site.kind != "norm" and owner in readout_modules:
            site.kind = "readout_bias"

    multipliers = _multiplier_sites(modules, blocks, structure, occ_roles, sites)
    attention = _attention_sites(modules, structure)
    family = structure.family if structure is not None else declared_attr(model, "dl_family")
    if family is None and attention:
        family = "transformer"
    return Layout(sites, unresolved, multipliers, attention, blocks, family, structure)


def _family_init(model: nn.Module) -> bool:
    """True for a Hugging Face model: ``PreTrainedModel._init_weights`` documents that every parameter a module
    defines itself gets the family's own init (Mamba's ``A_log``), so none of them is classified by guess."""
    return hf.is_hf_model(model)  # never imports transformers itself


def _family_biases(occurrences: dict[int, list[_Occurrence]], doubtful: dict[str, str], ctx: _Context,
                   modules: dict[str, nn.Module]) -> dict[str, str]:
    """In a Hugging Face model, the undeclared biases of layers inside a module that defines parameters of its
    own: the family's init of that module sets them too (Mamba's ``dt_proj.bias``, about −4.6), so zeroing
    them would be a guess."""
    if not ctx.family_init or not doubtful:
        return {}
    owners = frozenset(o.module_name for occ in occurrences.values() for o in occ
                       if doubtful.get(o.name, "").startswith("defined by"))
    out = {}
    for occ in occurrences.values():
        for o in occ:
            if (o.name in doubtful or o.pname != "bias" or special.is_norm(o.module)
                    or not _under_strict(o.module_name, owners)
                    or _declared_role(o.name, o.pname, o.module, o.module_name, o.p, ctx) is not None):
                continue
            owner = o.module_name.rpartition(".")[0]
            while owner not in owners:
                owner = owner.rpartition(".")[0]
            out[o.name] = f"a bias inside {type(modules[owner]).__name__}, whose family init sets it"
    return out


def _multiplier_sites(modules: dict[str, nn.Module], blocks: dict[str, int], structure: Structure | None,
                      occ_roles: dict[str, tuple[str, str | None]], sites: list[ParamSite]) -> list[MultiplierSite]:
    """Which module carries which multiplier, and whether its forward (own layers) or a hook applies it.

    Input and readout sites are the Structure's ``inputs``/``readouts``, modules with their own ``input_mult`` /
    ``output_mult``, and any other module owning an input- or readout-role weight — unless it lies inside a
    declared input or readout module, whose multiplier already covers it (never applied twice).
    """
    plan_name = {n: s.name for s in sites for n in (s.name, *s.aliases)}
    out: list[MultiplierSite] = []
    for name in blocks:
        if hasattr(modules[name], "branch_mult") and getattr(modules[name], "dl_block_depth", None) is not None:
            out.append(MultiplierSite(name, "branch", "branch_mult"))
    if structure is not None:
        out += [MultiplierSite(b, "branch", "dl_branch_mult") for b in structure.branches]
    declared_in = tuple(structure.inputs) if structure is not None else ()
    declared_out = tuple(structure.readouts) if structure is not None else ()

    def sites_of(kind: str, own_attr: str, declared: tuple[str, ...]) -> set[str]:
        own = {n for n, m in modules.items() if hasattr(m, own_attr)}
        inferred = {m for m, r in occ_roles.values() if r == kind}
        covered = frozenset((*declared, *own))
        return set(declared) | own | {m for m in inferred if not _under_strict(m, covered)}

    for name in sorted(sites_of("input", "input_mult", declared_in)):
        out.append(MultiplierSite(name, "input", "input_mult" if hasattr(modules[name], "input_mult")
                                  else "dl_input_mult"))
    readout_weights = {m: plan_name.get(occ) for occ, (m, r) in occ_roles.items()
                       if r == "readout" and occ == join(m, "weight")}
    for name in sorted(sites_of("readout", "output_mult", declared_out)):
        attr = "output_mult" if hasattr(modules[name], "output_mult") else "dl_output_mult"
        out.append(MultiplierSite(name, "readout", attr, readout_weights.get(name)))
    # a router's input gets the readout's m_N^{-1} (its E outputs are finite, scaling/moe.py), without output_mult
    for occ, (m, r) in sorted(occ_roles.items()):
        if r == "router" and occ == join(m, "weight"):
            out.append(MultiplierSite(m, "router", "dl_output_mult", plan_name.get(occ)))
    return out


def _under_strict(name: str, prefixes: Collection[str]) -> bool:
    """True if module ``name`` lies strictly inside one of ``prefixes`` (the root contains everything)."""
    lookup = prefixes if isinstance(prefixes, Set | Mapping) else frozenset(prefixes)
    if name and "" in lookup:
        return True
    return bool(name) and _under(name.rpartition(".")[0], lookup)


def _attention_sites(modules: dict[str, nn.Module], structure: Structure | None) -> list[AttentionSite]:
    out = []
    declared = structure.attention if structure is not None else {}
    for name, spec in declared.items():
        module = modules[name]
        own = getattr(module, "dl_own_scale", None)  # recorded by the first apply, before the plan overwrote it
        if own is None and spec.scale_attr is not None:
            value = getattr(module, spec.scale_attr, None)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DeeplimitError(
                    f"attention {name} has no number attribute {spec.scale_attr!r} (got {value!r}); name the float "
                    "attribute its forward multiplies q·k by (AttentionSpec(scale_attr=...)), or None if it has none")
            own = float(value)
        if own is None:
            own = 1.0 / math.sqrt(spec.head_dim)
        out.append(AttentionSite(name, spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.scale_attr, own))
    for name, module in modules.items():
        if isinstance(module, MultiHeadAttention) and name not in declared:
            out.append(AttentionSite(name, module.n_heads, module.n_heads, module.head_dim, None, module.scale,
                                     config=module.logit_scale))
    return out


def suggest_roles(model: nn.Module, names: list[str], width: float | None) -> dict[str, str]:
    """A ``roles=`` mapping that would classify ``names``: the fix printed when a role cannot be told.

    A matrix whose fan-in and fan-out are both the model's width is ``hidden``, one that maps another size to
    the width is ``input``, and one that maps the width to another size is ``readout``. Without a known width the
    first and last matrices in module order are taken as input and readout. Block indices become ``*``, so a
    stack of layers gives one pattern per layer type. It is a guess for the user to read, not a classification.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    matrices = [canonical_name(n) for n, p in params.items() if p.ndim >= 2]
    if width is not None and not any(width in (p.shape[0], math.prod(p.shape[1:])) for p in params.values()
                                     if p.ndim >= 2):
        width = None  # a placeholder width (unknown: 1) says nothing about the shapes
    wanted = set(names)
    out: dict[str, str] = {}
    for raw, p in params.items():
        name = canonical_name(raw)
        if name not in wanted:
            continue
        if p.ndim <= 1:
            role = "vector"
        elif width is not None and int(p.shape[0]) == width and math.prod(p.shape[1:]) != width:
            role = "input"
        elif width is not None and int(p.shape[0]) != width and math.prod(p.shape[1:]) == width:
            role = "readout"
        elif width is None and name == matrices[0]:
            role = "input"
        elif width is None and name == matrices[-1]:
            role = "readout"
        else:
            role = "hidden"
        out[name] = role
    # One pattern per layer type of a stack (``layers.*.q.weight``) where every member has the same role.
    groups: dict[str, list[str]] = {}
    for name in out:
        groups.setdefault(re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "*", name), []).append(name)
    collapsed: dict[str, str] = {}
    for pattern, members in groups.items():
        if len(members) > 1 and len({out[m] for m in members}) == 1:
            collapsed[pattern] = out[members[0]]
        else:
            collapsed.update((m, out[m]) for m in members)
    return collapsed
