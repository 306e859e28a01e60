"""What the docs must say, read from the code: CLI flags (argparse) and method options (config dataclasses).

``tests/test_docs.py`` checks ``docs/cli.md`` and ``docs/methods/<name>.md`` against these. To
write or refresh a table, print it from the code and paste it:

    python tests/docs_reference.py cli                # every subcommand's flag table
    python tests/docs_reference.py options dlsr       # a method page's options table
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

COMMON = "options every command takes"  # the docs/cli.md section of the flags in cli._common()


def parser() -> argparse.ArgumentParser:
    from ood_bench.cli import _parser

    return _parser()


def subcommands(p: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    p = p or parser()
    (sub,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def common_flags() -> set[str]:
    from ood_bench.cli import _common

    return {s for a in _options(_common()) for s in a.option_strings}


def cli_flags() -> dict[str, set[str]]:
    """Section name → flags: ``ood-bench`` (top level), ``ood-bench <command>`` (its own flags),
    and :data:`COMMON` (the logging flags every command takes)."""
    p = parser()
    common = common_flags()
    out = {"ood-bench": {s for a in _options(p) for s in a.option_strings}, COMMON: common}
    for name, sp in subcommands(p).items():
        out[f"ood-bench {name}"] = {s for a in _options(sp) for s in a.option_strings} - common
    return out


def _cell(text: str) -> str:
    text = " ".join(str(text or "").split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def cli_table(p: argparse.ArgumentParser, skip: set[str] = frozenset()) -> str:
    rows = ["| flag | value | meaning |", "|---|---|---|"]
    for a in _options(p):
        if set(a.option_strings) & skip:
            continue
        flags = ", ".join(f"`{s}`" for s in a.option_strings)
        if a.nargs == 0:
            value = ""
        elif a.choices:
            value = "`" + "\\|".join(map(str, a.choices)) + "`"
        else:
            value = f"`{a.metavar or a.dest.upper()}`" + (" ..." if a.nargs in ("+", "*") else "")
        rows.append(f"| {flags} | {value} | {_cell(a.help)} |")
    return "\n".join(rows)


def format_default(value) -> str:
    """An option's default as ``--set`` and ``ood-bench list --options`` write it (YAML flow)."""
    from ood_bench.cli import _yaml

    return _yaml(value)


def method_options(name: str) -> dict[str, tuple[str, str, str]]:
    """Option → (stage, default as YAML, help) of a registered method's config dataclass."""
    import ood_bench.methods  # noqa: F401  (registers the built-ins)
    from ood_bench.methods.registry import METHODS

    cls = METHODS.get(name).config_cls
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = (f.metadata.get("stage", "fit"), format_default(default), f.metadata.get("help", ""))
    return out


def default_value(name: str, option: str):
    """The default of ``option`` in ``name``'s config dataclass, tuples as lists."""
    import ood_bench.methods  # noqa: F401
    from ood_bench.methods.registry import METHODS

    f = {f.name: f for f in dataclasses.fields(METHODS.get(name).config_cls)}[option]
    v = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return list(v) if isinstance(v, tuple) else v


def own_options(name: str) -> list[str]:
    """Options the method's config class declares itself, or inherits from a class of the method's
    own package that is not another method's config. Options of shared groups (``MethodConfig``,
    ``FeatureOptions``, ``PixelDiffusionConfig``, ``ClassifierOptions``, ... from other modules)
    and of another method's config (``diffusion-ic`` extends ``diffusion-nll``'s) may instead be
    documented on the page that owns them."""
    import ood_bench.methods  # noqa: F401
    from ood_bench.methods.registry import METHODS

    method = METHODS.get(name)
    package = method.__module__.rsplit(".", 1)[0]
    others = {cls.config_cls for n, cls in METHODS.items() if n != METHODS.canonical(name)}
    own: list[str] = []
    for klass in method.config_cls.__mro__:
        if klass is not method.config_cls and (klass.__module__.rsplit(".", 1)[0] != package or klass in others):
            continue
        own += [n for n in vars(klass).get("__annotations__", {}) if n not in own]
    return [f.name for f in dataclasses.fields(method.config_cls) if f.name in own]


def options_table(name: str) -> str:
    rows = ["| option | stage | default | meaning |", "|---|---|---|---|"]
    for opt, (stage, default, help_) in method_options(name).items():
        rows.append(f"| `{opt}` | {stage} | `{default}` | {_cell(help_)} |")
    return "\n".join(rows)


def builtin_methods() -> list[str]:
    """Registry names of the methods the package itself registers (not test or user plugins)."""
    import ood_bench.methods  # noqa: F401
    from ood_bench.methods.registry import METHODS

    return [n for n, cls in METHODS.items() if cls.__module__.startswith("ood_bench.")]


def _main(argv: list[str]) -> int:
    if argv[:1] == ["cli"]:
        p = parser()
        print(f"## ood-bench\n\n{cli_table(p)}\n")
        from ood_bench.cli import _common

        print(f"## {COMMON[0].upper()}{COMMON[1:]}\n\n{cli_table(_common())}\n")
        common = common_flags()
        for name, sp in subcommands(p).items():
            print(f"## ood-bench {name}\n\n{cli_table(sp, skip=common)}\n")
        return 0
    if argv[:1] == ["options"] and len(argv) == 2:
        print(options_table(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
