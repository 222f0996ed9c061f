"""The ``deeplimit`` command line: one sub-command module per capability.

Each module in :data:`COMMANDS` exposes ``register(subparsers)``, which adds its sub-parser and sets ``func`` to
a callable taking the parsed arguments and returning an exit code. Only the module of the command being run
is imported (``deeplimit --help`` imports none, so it answers without loading torch); its command function
imports the heavy libraries it needs.

Every sub-parser is a :class:`Parser` with the :class:`HelpFormatter` set here once: plain-text help (no
reStructuredText markup), each flag's default shown, and one-line errors.

Exit codes (:mod:`deeplimit.runtime`, shared with the sweep workers): 0 success; 2 bad input (a usage error or
a :class:`~deeplimit.errors.DeeplimitError`, one line naming the problem and the fix); 1 a failure while
running (e.g. a report section that crashed, a disk error); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import textwrap

from deeplimit.errors import DeeplimitError
from deeplimit.runtime import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED

# name → (module, one-line help shown by ``deeplimit --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("deeplimit.cli.plan", "print the resolved per-parameter plan (which table? this one)"),
    "coord-check": ("deeplimit.cli.coord_check", "coordinate check over width or depth (table, PNG, verdict)"),
    "feature-diversity": ("deeplimit.cli.feature_diversity",
                          "feature diversity exponent kappa of trained MLP-ResNets"),
    "train": ("deeplimit.cli.train", "train one model (any rule, any data) and write its loss table"),
    "sweep": ("deeplimit.cli.sweep", "LR-transfer sweeps on Optuna (create, run, analyze)"),
    "sde": ("deeplimit.cli.sde", "simulate a covariance-SDE scenario and compare it with finite networks"),
    "signal": ("deeplimit.cli.signal", "gradient norms at init and attention entropy in training (shaped vs LN)"),
    "predict": ("deeplimit.cli.predict", "predict the optimal LR (and batch size) at a target scale from runs"),
    "reproduce": ("deeplimit.cli.reproduce", "reproduce both papers' key results at CPU scale (HTML report)"),
}

_RST = [
    (re.compile(r":[a-z]+:`~?([^`]+)`"), r"\1"),  # :func:`x` → x
    (re.compile(r"``([^`]+)``"), r"\1"),  # ``x`` → x
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"::[ \t]*$", re.M), ":"),  # "Examples::" → "Examples:"
]


def plain(text: str) -> str:
    """Drop reStructuredText markup from a docstring used as help text."""
    for pattern, repl in _RST:
        text = pattern.sub(repl, text)
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Plain-text help: descriptions wrapped by paragraph (indented example blocks kept verbatim), RST markup
    dropped, and ``(default: …)`` appended to every flag that has a meaningful default."""

    def __init__(self, prog: str, **kwargs) -> None:
        kwargs.setdefault("max_help_position", 30)
        kwargs.setdefault("width", min(110, shutil.get_terminal_size((100, 20)).columns))
        super().__init__(prog, **kwargs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain(action.help or "")
        default = action.default
        if (not action.option_strings or "%(default)" in text or "default" in text.lower() or default is None
                or default is argparse.SUPPRESS or isinstance(default, bool) or default == []):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = re.split(r"\n\s*\n", textwrap.dedent(plain(text)).strip("\n"))
        out = []
        for para in paragraphs:
            lines = para.split("\n")
            if all(line.startswith((" ", "\t")) for line in lines if line.strip()):
                out.append("\n".join(indent + line for line in lines))  # an example block: keep as written
            else:
                out.append(textwrap.fill(" ".join(line.strip() for line in lines), width,
                                         initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)


class Parser(argparse.ArgumentParser):
    """ArgumentParser with the package's help formatter (whatever a sub-command asks for) and one-line errors."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["formatter_class"] = HelpFormatter
        if kwargs.get("description"):
            kwargs["description"] = plain(kwargs["description"])
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _chosen(argv: list[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def build_parser(command: str | None = None) -> Parser:
    """The top-level parser; only ``command``'s module is imported and registered in full (None: none).

    ``parser.subparsers`` maps each command name to its sub-parser."""
    from deeplimit import __version__

    parser = Parser(prog="deeplimit", description="Neural networks in the infinite depth-and-width limit.")
    parser.add_argument("--version", action="version", version=f"deeplimit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, (module, text) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=text, description=text)
    parser.subparsers = sub.choices
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``deeplimit ARGV``; returns the exit code (usage errors too, never raises SystemExit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_chosen(argv))
        args, extra = parser.parse_known_args(argv)
        if extra:  # let the sub-command's own parser say it, so the hint names its --help
            parser.subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    prog = f"deeplimit {args.command}"
    try:
        return int(args.func(args) or 0)
    except DeeplimitError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        print(f"\n{prog}: {exc or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # disk full, permission lost mid-run: say so in one line
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
