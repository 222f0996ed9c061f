"""Small argument helpers shared by the sub-commands (light: no torch at import)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import math
import types
import typing
from collections import abc
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from deeplimit.errors import DeeplimitError
from deeplimit.runtime import set_threads  # noqa: F401 - the one thread helper, for the commands

_WORDS = {"true": True, "false": False, "none": None, "null": None, "nan": math.nan, "inf": math.inf,
          "+inf": math.inf, "-inf": -math.inf}
# The words a boolean option accepts on the command line; anything else is an error (never "non-empty = True").
BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
MAX_THREADS = 1024
MAX_SEED = 2**32 - 1


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def thread_count(text: str) -> int:
    """argparse type: a number of threads in 1..:data:`MAX_THREADS` (10**12 overflows torch's int)."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} threads, got {value}")
    return value


def check_seeds(name: str, *seeds: int) -> None:
    """A one-line error unless every seed is in 0..:data:`MAX_SEED` (a seed of 10**30 overflows the RNGs)."""
    for seed in seeds:
        if isinstance(seed, int) and seed > MAX_SEED:
            raise DeeplimitError(f"{name} must be at most {MAX_SEED:,} (a 32-bit seed), got {seed}")


def parse_bool(key: str, text: str) -> bool:
    """A boolean option's value: one of :data:`BOOL_WORDS` (any case), else a one-line error naming the key."""
    word = text.strip().lower()
    if word not in BOOL_WORDS:
        raise DeeplimitError(f"{key} is a yes/no option: write {key}=true or {key}=false (accepted: "
                             f"{', '.join(BOOL_WORDS)}), got {text!r}")
    return BOOL_WORDS[word]


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal (``3``, ``0.5``, ``(0.9, 0.95)``, ``'abs'``), ``true``/``false``,
    ``none``, ``nan``/``inf`` (so validation can name them), or else the plain string."""
    word = text.strip()
    if word.lower() in _WORDS:
        return _WORDS[word.lower()]
    try:
        return ast.literal_eval(word)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return word


def setting_key(name: str) -> str:
    """A setting's or a rule's name as compared: trimmed, lower case, ``-`` read as ``_`` (``block-mult`` is
    ``block_mult``, ``depth-mup`` is ``depth_mup``)."""
    return name.strip().lower().replace("-", "_")


def rule_arg(text: str) -> str:
    """argparse type of a rule name: any case, ``-`` or ``_`` (``depth-mup`` is ``depth_mup``), aliases such as
    ``standard``; returned as :data:`~deeplimit.scaling.rules.RULES` spells it, so one rule has one label."""
    from deeplimit.scaling.rules import get_rule  # here, not at import: building a parser loads no torch

    key = setting_key(text)
    if key == "custom":
        return key
    try:
        return get_rule(key).name
    except DeeplimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fields_of(*classes: type, only: Collection[str] | None = None) -> dict[str, Any]:
    """``{field name: type}`` of dataclasses (the types :func:`parse_sets` reads values as), e.g.
    ``fields_of(TrainConfig)``; with ``only``, just those names. A name in several classes keeps the first type."""
    out: dict[str, Any] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if (only is None or f.name in only) and f.name not in out:
                out[f.name] = hints.get(f.name, Any)
    return out


def parse_sets(pairs: Sequence[str] | None, fields: Mapping[str, Any], *, flag: str = "--set") -> dict[str, Any]:
    """``["KEY=VALUE", …]`` → ``{key: value}``, each value read as its field's type: the one ``--set`` grammar.

    ``fields`` maps each accepted name to its type (:func:`fields_of` derives it from a dataclass): ``bool``
    takes only the words of :data:`BOOL_WORDS` (``flag=true`` is True, ``flag=perhaps`` an error, never
    "non-empty = True"), ``int``/``float`` numbers, ``str`` the text as written, ``list[T]``/``tuple[T, ...]``
    comma-separated items (``depth=8,16`` or ``depth=[8, 16]``; one item is a list of one), ``T | None`` also
    ``none``, ``Any`` a Python literal or else the text. In a union (``int | list[int]``) a value with a comma
    is the list, else the first scalar type that reads it. Names are accepted with ``-`` or ``_`` and come
    back spelled as in ``fields``; an unknown name, a name given twice or an unreadable value is a one-line
    :class:`DeeplimitError` listing what is valid.
    """
    by_name = {setting_key(name): name for name in fields}
    out: dict[str, Any] = {}
    for item in pairs or []:
        raw_key, eq, text = item.partition("=")
        if not eq or not raw_key.strip():
            first = next(iter(fields), None)
            example = f"{flag} {first}={_example(fields[first])}" if first else f"{flag} block_mult=0.35"
            raise DeeplimitError(f"{flag} expects KEY=VALUE, got {item!r}; e.g. {example}")
        key = by_name.get(setting_key(raw_key))
        if key is None:
            raise DeeplimitError(f"{flag} {raw_key.strip()}: no such setting here; valid: "
                                 f"{', '.join(sorted(fields)) or 'none'}")
        if key in out:
            raise DeeplimitError(f"{flag} {key}=… is given twice; give each setting once (several values: "
                                 f"{flag} {key}=a,b)")
        if not text.strip():
            raise DeeplimitError(f"{flag} {key}= has no value; give one, e.g. {flag} {key}={_example(fields[key])}")
        out[key] = read_as(f"{flag} {key}", text, fields[key])
    return out


_NONE_WORDS = ("none", "null")


def _members(tp: Any) -> tuple[Any, ...]:
    """The alternatives of a union type (``int | None`` → ``(int, NoneType)``), or ``(tp,)``."""
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


def _is_sequence(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple, abc.Sequence) or tp in (list, tuple)


def _describe(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str:
        return "a word"
    if tp is type(None):
        return "none"
    if _is_sequence(tp):
        inner = typing.get_args(tp)
        plural = {bool: "true/false values", int: "whole numbers", float: "numbers", str: "words"}
        return f"a comma-separated list of {plural.get(inner[0], 'values')}" if inner else "a comma-separated list"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if len(_members(tp)) > 1:
        return " or ".join(_describe(m) for m in _members(tp))
    return "a value"


def _example(tp: Any) -> str:
    scalar = next((m for m in _members(tp) if m is not type(None)), tp)
    if _is_sequence(scalar):
        inner = (typing.get_args(scalar) or (float,))[0]
        return f"{_example(inner)},{_example(inner)}"
    if typing.get_origin(scalar) is typing.Literal:
        return str(typing.get_args(scalar)[0])
    return {bool: "true", int: "8", float: "0.5", str: "abs"}.get(scalar, "8")


def _scalar(where: str, text: str, tp: Any) -> Any:
    """``text`` read as the non-union, non-sequence type ``tp``; ValueError if it is not one."""
    word = text.strip()
    if tp is bool:
        if word.lower() not in BOOL_WORDS:
            raise ValueError(word)
        return BOOL_WORDS[word.lower()]
    if tp is int:
        return int(word)
    if tp is float:
        return float(word)
    if tp is str:
        return word
    if tp is type(None):
        if word.lower() not in _NONE_WORDS:
            raise ValueError(word)
        return None
    if typing.get_origin(tp) is typing.Literal:
        for choice in typing.get_args(tp):
            if word == str(choice):
                return choice
        raise ValueError(word)
    if tp in (dict, Any, object) or typing.get_origin(tp) is dict:
        value = parse_value(word)
        if (tp is dict or typing.get_origin(tp) is dict) and not isinstance(value, dict):
            raise ValueError(word)
        return value
    raise ValueError(f"{where}: cannot read a value of type {tp!r}")


def _sequence(where: str, text: str, tp: Any) -> list | tuple:
    word = text.strip()
    if word[:1] + word[-1:] in ("[]", "()"):
        word = word[1:-1]
    items = [part for part in (p.strip() for p in word.split(",")) if part]
    inner = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and inner and inner[-1] is not Ellipsis:
        if len(items) != len(inner):
            raise ValueError(f"{len(inner)} items")
        return tuple(read_as(where, part, t) for part, t in zip(items, inner))
    values = [read_as(where, part, inner[0] if inner else Any) for part in items]
    if not values:
        raise ValueError(word)
    return tuple(values) if typing.get_origin(tp) is tuple or tp is tuple else values


def read_as(where: str, text: str, tp: Any) -> Any:
    """One ``--set`` value ``text`` read as type ``tp`` (see :func:`parse_sets`); a one-line error naming
    ``where``, what was expected and an example otherwise."""
    members = _members(tp)
    word = text.strip()
    seqs = [m for m in members if _is_sequence(m)]
    # Several items (a comma, brackets) are read as the list first; one item as a scalar first, then as a list
    # of one (``depth=8`` in ``int | list[int]`` is 8; in ``list[int]`` it is [8]).
    several = "," in word or word[:1] + word[-1:] in ("[]", "()")
    scalars = sorted((m for m in members if not _is_sequence(m)),
                     key=lambda m: (m is not type(None), m is not bool, m is not int, m is not float, m is str))
    order = [*seqs, *scalars] if several else [*scalars, *seqs]
    if word.lower() in BOOL_WORDS and bool in members:
        order.remove(bool)
        order.insert(0, bool)  # "true"/"1" where a yes/no is expected is the yes/no
    for member in order:
        try:
            return _sequence(where, word, member) if _is_sequence(member) else _scalar(where, word, member)
        except (ValueError, TypeError):
            continue
    if bool in members and len(members) <= 2:
        raise DeeplimitError(f"{where} is a yes/no option: write {where}=true or {where}=false (accepted: "
                             f"{', '.join(BOOL_WORDS)}), got {text!r}")
    raise DeeplimitError(f"{where}={text}: expected {_describe(tp)}; e.g. {where}={_example(tp)}")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--quiet``: how a compute command runs, never what it computes."""
    g = p.add_argument_group("running")
    g.add_argument("--threads", type=thread_count, default=1,
                   help="torch threads (one is the fast, stable setting on small machines)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars on stderr")


