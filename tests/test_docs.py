"""The docs are true and complete: README.md and every page under docs/.

What fails here, and why it matters to a reader:
- a shell command in a code block that the CLI would refuse (unknown subcommand or flag, bad
  choice, unknown preset, method, dataset or ``--set`` option), a Python block that does not
  compile, a TOML/YAML block that does not parse, a marked example no test executes;
- a relative link or ``#anchor`` that leads nowhere, a link outside the repository, ``../shared``;
- a registered method without its page (or a page without its method), a page without the
  required sections, an options table that differs from the method's config dataclass, a method
  missing from the README's methods table or the docs index;
- ``docs/cli.md`` missing a flag argparse defines, or listing one it no longer defines;
- a README over 20 KB or one that does not start with the two commands.

``python tests/docs_reference.py cli`` / ``... options NAME`` print the tables these checks expect.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from docs_reference import builtin_methods, cli_flags, default_value, method_options, own_options, parser, subcommands
from readme_examples import README, ROOT, doc_files, marked_examples

DOCS = ROOT / "docs"
# a method page's sections, matched by the start of their heading (case-insensitive)
METHOD_SECTIONS = ("Idea", "Options", "Cost", "Differences", "The paper's numbers", "Reproduce")
SHELL = {"bash", "sh", "shell", "console"}


# ------------------------------------------------------------------------------ parsing helpers
def code_blocks(text: str) -> list[tuple[str, str, int]]:
    """Fenced blocks: (language, code, line number of the opening fence)."""
    out, lang, buf, start = [], None, [], 0
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*```\s*([\w+-]*)\s*$", line)
        if m and lang is None:
            lang, buf, start = m.group(1).lower(), [], i
        elif m and lang is not None and not m.group(1):
            out.append((lang, "\n".join(buf) + "\n", start))
            lang = None
        elif lang is not None:
            buf.append(line)
    assert lang is None, f"unclosed code block opened at line {start}"
    return out


def prose(text: str) -> str:
    """The text without fenced blocks and inline code (where brackets are not links)."""
    text = re.sub(r"^\s*```.*?^\s*```\s*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(text):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(2))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def prose_lines(text: str) -> list[str]:
    """Lines outside fenced blocks (headings inside a bash block are comments, not anchors)."""
    lines, inside = [], False
    for line in text.splitlines():
        if re.match(r"^\s*```", line):
            inside = not inside
        elif not inside:
            lines.append(line)
    return lines


def sections(text: str, level: int = 2) -> dict[str, str]:
    """Heading text → the text under it, up to the next heading of that level or higher."""
    out, name, buf, inside = {}, None, [], False
    for line in text.splitlines():
        if re.match(r"^\s*```", line):
            inside = not inside
        m = None if inside else re.match(rf"^#{{1,{level}}}\s+(.*?)\s*$", line)
        if m and not line.startswith("#" * (level + 1)):
            if name is not None:
                out[name] = "\n".join(buf)
            name, buf = m.group(1), []
        elif name is not None:
            buf.append(line)
    if name is not None:
        out[name] = "\n".join(buf)
    return out


def table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row (header and separator rows excluded)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.match(r"^\|[\s:|-]+\|\s*$", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append(cells)
    return rows


# ------------------------------------------------------------------------------ checks (return problems)
def check_links(path: Path, text: str) -> list[str]:
    problems = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not dest.is_relative_to(ROOT):
            problems.append(f"{path.name}: link {target!r} leaves the repository")
        elif not dest.exists():
            problems.append(f"{path.name}: link {target!r} leads to no file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            problems.append(f"{path.name}: link {target!r}: no heading with anchor #{anchor} in {dest.name}")
    return problems


def shell_commands(code: str) -> list[list[str]]:
    """Each simple command of a shell block as tokens (continuations joined, comments dropped)."""
    code = code.replace("\\\n", " ").replace("$(which ood-bench)", "ood-bench")
    out = []
    for line in code.splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split, lex.commenters = True, "#"
        cmd: list[str] = []
        for tok in lex:
            if tok in (";", "&&", "||", "|", "&"):
                out.append(cmd) if cmd else None
                cmd = []
            else:
                cmd.append(tok)
        if cmd:
            out.append(cmd)
    return out


def ood_bench_argv(tokens: list[str]) -> list[str] | None:
    """The arguments given to ood-bench in a command (``ood-bench``, ``.venv/bin/ood-bench``,
    ``python -m ood_bench``, ``torchrun ... -m ood_bench``, ``srun ood-bench``), else None."""
    for i, tok in enumerate(tokens):
        if tok == "ood-bench" or tok.endswith("/ood-bench"):
            return tokens[i + 1:]
        if tok == "ood_bench" and i > 0 and tokens[i - 1] == "-m":
            return tokens[i + 1:]
    return None


def _parse(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser().parse_args(argv), ""
    except SystemExit as e:
        if e.code == 0:  # --help / --version
            return None, ""
        return None, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"


def check_ood_bench_command(argv: list[str]) -> list[str]:
    """The CLI accepts ``argv``, and the presets, methods, datasets and options it names exist."""
    from ood_bench.cli import preset_config
    from ood_bench.data import DATASETS
    from ood_bench.engine.config import build_dataclass, find_preset, parse_set
    from ood_bench.methods.registry import METHODS
    from ood_bench.utils.errors import UserError

    args, err = _parse(argv)
    if args is None:
        return [f"`ood-bench {shlex.join(argv)}`: {err}"] if err else []
    where = f"`ood-bench {shlex.join(argv)}`"
    problems = []
    plugins = bool(getattr(args, "plugins", None))
    try:
        config = getattr(args, "config", None)
        if config and "/" in config:  # a YAML file: docs' commands run from the repository root
            if not (ROOT / config).is_file():
                problems.append(f"{where}: config file {config} is not in the repository")
                return problems
            args.config = str(ROOT / config)
        elif config:
            find_preset(config)
        for m in getattr(args, "methods", None) or []:
            if m not in METHODS and not plugins:
                problems.append(f"{where}: unknown method {m!r}")
        for flag in ("id", "ood", "near", "far", "data"):
            names = getattr(args, flag, None) or []
            for n in [names] if isinstance(names, str) else names:
                if "/" not in n and n not in DATASETS and not plugins:
                    problems.append(f"{where}: unknown dataset {n!r} (--{flag})")
        if getattr(args, "sets", None):
            given = parse_set(args.sets)
            _, cfg = preset_config(args)
            for m in given:
                if m not in METHODS:
                    if not plugins:
                        problems.append(f"{where}: --set names unknown method {m!r}")
                    continue
                key = METHODS.canonical(m)
                build_dataclass(METHODS.get(key).config_cls, {**cfg.method_options.get(key, {}),
                                                             **cfg.method_options.get(m, {})}, key)
    except UserError as e:
        problems.append(f"{where}: {e.one_line()}")
    return problems


def inline_commands(text: str) -> list[list[str]]:
    """Concrete ``ood-bench ...`` commands written as inline code in the prose (templates with
    placeholders such as ``RUN``, ``PRESET``, ``N`` or ``...`` are left out)."""
    out = []
    for line in prose_lines(text):
        for span in re.findall(r"`(ood-bench [^`]+)`", line):
            if re.search(r"(?<![\w.-])[A-Z][A-Z_]*(?![\w])|\.\.\.|…|<", span):
                continue
            out.append(shlex.split(span))
    return out


def check_code_blocks(path: Path, text: str, make_targets: set[str]) -> list[str]:
    problems = []
    for tokens in inline_commands(text):
        if len(tokens) == 2 and not tokens[1].startswith("-"):  # a command named in prose: `ood-bench fetch`
            if tokens[1] not in subcommands():
                problems.append(f"{path.relative_to(ROOT)} (inline): no command {shlex.join(tokens)!r}")
            continue
        problems += [f"{path.relative_to(ROOT)} (inline): {p}" for p in check_ood_bench_command(tokens[1:])]
    for lang, code, line in code_blocks(text):
        at = f"{path.relative_to(ROOT)}:{line}"
        if lang in SHELL:
            for tokens in shell_commands(code):
                argv = ood_bench_argv(tokens)
                if argv is not None:
                    problems += [f"{at}: {p}" for p in check_ood_bench_command(argv)]
                elif tokens[0] == "make":
                    problems += [f"{at}: make target {t!r} is not in the Makefile"
                                 for t in tokens[1:] if "=" not in t and t not in make_targets]
        elif lang == "python":
            try:
                compile(code, str(at), "exec")
            except SyntaxError as e:
                problems.append(f"{at}: python block does not compile: {e}")
        elif lang == "toml":
            try:
                tomllib.loads(code)
            except tomllib.TOMLDecodeError as e:
                problems.append(f"{at}: toml block does not parse: {e}")
        elif lang in ("yaml", "yml"):
            try:
                yaml.safe_load(code)
            except yaml.YAMLError as e:
                problems.append(f"{at}: yaml block does not parse: {e}")
    return problems


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each Markdown table as (lower-cased header cells, body rows)."""
    tables, lines = [], text.splitlines()
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.match(r"^\|[\s:|-]+\|\s*$", lines[i + 1]) and \
                (i == 0 or not lines[i - 1].startswith("|")):
            body = []
            for line in lines[i + 2:]:
                if not line.startswith("|"):
                    break
                body.append(split(line))
            tables.append(([c.lower() for c in split(lines[i])], body))
    return tables


def _same_default(documented: str, actual) -> bool:
    try:
        value = yaml.safe_load(documented.strip().strip("`"))
    except yaml.YAMLError:
        return False
    if isinstance(actual, float) and not isinstance(actual, bool):
        try:
            return float(value) == actual
        except (TypeError, ValueError):
            return False
    if value is None and actual == "":
        return False
    return value == actual


def check_options_table(name: str, page: str) -> list[str]:
    """The page's options table (under a heading starting with "Options"; columns named
    ``option`` and ``default``, optionally ``stage``) documents options that exist, with their
    real defaults (and stages), and lists every option the method declares itself
    (:func:`docs_reference.own_options`)."""
    secs = sections(page)
    title = next((t for t in secs if t.lower().startswith("options")), None)
    if title is None:
        return [f"{name}: no '## Options' section"]
    want = method_options(name)
    rows: dict[str, tuple[str | None, str]] = {}
    for header, body in markdown_tables(secs[title]):
        if "option" not in header or not any("default" in h for h in header):
            continue
        io_, id_ = header.index("option"), next(k for k, h in enumerate(header) if "default" in h)
        is_ = header.index("stage") if "stage" in header else None
        for cells in body:
            m = re.fullmatch(r"`([\w.-]+)`", cells[io_]) if len(cells) > max(io_, id_) else None
            if m:
                rows[m.group(1)] = (cells[is_] if is_ is not None else None, cells[id_])
    if not rows:
        return [f"{name}: the Options section has no table with `option` and `default` columns"]
    problems = [f"{name}: option {o!r} is not in the page's options table" for o in own_options(name) if o not in rows]
    problems += [f"{name}: the options table lists {o!r}, which {name}'s config does not have" for o in rows if o not in want]
    for o, (stage, default) in rows.items():
        if o not in want:
            continue
        if not _same_default(default, default_value(name, o)):
            problems.append(f"{name}: option {o!r} is documented with default {default.strip('`')}, the code's is {want[o][1]}")
        if stage is not None and stage != want[o][0]:
            problems.append(f"{name}: option {o!r} is documented as a {stage} option, the code says {want[o][0]}")
    if problems:
        problems.append(f"(`python tests/docs_reference.py options {name}` prints the table)")
    return problems


def check_cli_reference(text: str) -> list[str]:
    secs = sections(text)
    problems = []
    for section, flags in cli_flags().items():
        title = next((s for s in secs if s.lower() == section.lower()), None)
        if title is None:
            problems.append(f"docs/cli.md has no section '## {section}'")
            continue
        documented = {t for cells in table_rows(secs[title]) for t in re.findall(r"`(-[\w-]+)`", cells[0])}
        problems += [f"docs/cli.md '## {section}': flag {f} is not documented" for f in sorted(flags - documented)]
        problems += [f"docs/cli.md '## {section}': documents {f}, which the parser does not define"
                     for f in sorted(documented - flags)]
    if problems:
        problems.append("(`python tests/docs_reference.py cli` prints every table from the parser)")
    return problems


# ------------------------------------------------------------------------------ tests
def test_readme_is_short_and_starts_with_the_two_commands():
    assert README.stat().st_size <= 20_000, f"README.md is {README.stat().st_size} bytes; move detail into docs/"
    lang, code, line = code_blocks(README.read_text())[0]
    assert line == 1 and lang == "bash"
    assert [c[:2] for c in shell_commands(code)] == [["make", "demo"], ["make", "test"]]


def test_every_code_block_parses_and_every_command_is_accepted_by_the_cli():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    problems, commands = [], 0
    for path in doc_files():
        text = path.read_text()
        problems += check_code_blocks(path, text, targets)
        commands += sum(ood_bench_argv(t) is not None
                        for lang, code, _ in code_blocks(text) if lang in SHELL for t in shell_commands(code))
    assert commands > 50  # the check sees the commands (it would pass vacuously otherwise)
    assert problems == []


def test_every_marked_example_is_executed_by_a_test():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py")
    examples = marked_examples()
    assert {"api", "plugin"} <= set(examples)
    assert [n for n in examples if f'readme_example("{n}")' not in tests] == []


def test_every_relative_link_and_anchor_resolves():
    problems = [p for path in doc_files() for p in check_links(path, path.read_text())]
    assert problems == []


def test_nothing_points_outside_the_repository():
    for path in doc_files():
        text = path.read_text()
        assert "../shared" not in text and "/work/" not in text, path
    # nor does anything else the repository ships (code comments, scripts, presets)
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (e.g. an unpacked sdist): the docs check above still ran
        return
    offenders = [f for f in tracked if f != "tests/test_docs.py" and (ROOT / f).is_file()
                 and "../shared" in (ROOT / f).read_text(errors="ignore")]
    assert offenders == []


def test_every_docs_page_is_linked_from_the_index():
    index = (DOCS / "README.md").read_text() + README.read_text()
    linked = {(DOCS / t.partition("#")[0]).resolve() for t in re.findall(r"\]\(([^)#\s]+)", (DOCS / "README.md").read_text())}
    linked |= {(ROOT / t.partition("#")[0]).resolve() for t in re.findall(r"\]\(([^)#\s]+)", README.read_text())}
    assert index
    assert [p.relative_to(ROOT) for p in DOCS.rglob("*.md") if p.resolve() not in linked and p.name != "README.md"] == []


def test_every_registered_method_has_a_page_and_every_page_a_method():
    methods = set(builtin_methods())
    assert {"dlsr", "lmd", "diffood", "knn"} <= methods
    pages = {p.stem for p in (DOCS / "methods").glob("*.md")}
    assert sorted(methods - pages) == [], "methods without a page docs/methods/<name>.md"
    assert sorted(pages - methods) == [], "pages docs/methods/<name>.md without a registered method"


@pytest.mark.parametrize("name", builtin_methods())
def test_method_page_has_its_sections_options_and_rows(name):
    page = (DOCS / "methods" / f"{name}.md")
    text = page.read_text()
    headings = [h.lower() for h in sections(text)]
    missing = [s for s in METHOD_SECTIONS if not any(h.startswith(s.lower()) for h in headings)]
    assert missing == [], f"docs/methods/{name}.md lacks '## {missing[0]}'"
    assert check_options_table(name, text) == []
    link = f"(docs/methods/{name}.md)"
    readme_methods = sections(README.read_text()).get("Methods", "")
    assert any(link in line for line in readme_methods.splitlines() if line.startswith("|")), \
        f"README's methods table has no row linking {link}"
    assert f"(methods/{name}.md)" in (DOCS / "README.md").read_text()


def test_cli_reference_lists_exactly_the_parsers_flags():
    text = (DOCS / "cli.md").read_text()
    assert set(subcommands()) <= {s.removeprefix("ood-bench ") for s in sections(text)}
    assert check_cli_reference(text) == []


# ------------------------------------------------------------------------------ the checks catch what they should
def test_the_checks_catch_broken_docs(tmp_path):
    page = DOCS / "cli.md"
    assert check_links(page, "[x](no-such-page.md) [y](metrics.md#no-such-heading) [z](../../outside.md)") != []
    assert len(check_links(page, "[x](no-such-page.md) [y](metrics.md#no-such-heading) [z](../../outside.md)")) == 3
    assert check_links(page, "[ok](metrics.md#accuracy) [web](https://example.org) `[code](nowhere.md)`") == []

    bad = "```bash\nood-bench run --no-such-flag\nood-bench run --set dlsr.no_such_option=1\n" \
          "ood-bench run --method no-such-method\nood-bench run --config no-such-preset\n" \
          "ood-bench run --id no-such-set\nood-bench lsit\nmake no-such-target\n```\n" \
          "```python\ndef (:\n```\n```toml\n[x\n```\nInline: `ood-bench run --inline-gone` and `ood-bench fecth`.\n"
    problems = check_code_blocks(page, bad, {"demo", "test"})
    for needle in ("--no-such-flag", "no_such_option", "no-such-method", "no-such-preset", "no-such-set",
                   "lsit", "no-such-target", "python block", "toml block", "--inline-gone", "fecth"):
        assert any(needle in p for p in problems), (needle, problems)
    good = "```bash\n# a comment\nood-bench run --config embedded --set dlsr.t=5 \\\n    --ood noise  # trailing\n" \
           "torchrun --nproc_per_node 2 -m ood_bench run --device cpu && ood-bench list --options\n```\n"
    good += "Prose: `ood-bench fetch`, `ood-bench run --limit N` (a template), `ood-bench list --options`.\n"
    assert check_code_blocks(page, good, {"demo"}) == []

    text = (DOCS / "cli.md").read_text()
    assert any("--limit" in p for p in check_cli_reference(text.replace("`--limit`", "`--lim1t`")))
    assert any("--lim1t" in p for p in check_cli_reference(text.replace("`--limit`", "`--lim1t`")))

    dlsr = (DOCS / "methods" / "dlsr.md").read_text()
    assert check_options_table("dlsr", dlsr) == []
    gone = check_options_table("dlsr", dlsr.replace("| `t` |", "| `t_gone` |"))
    assert any("'t'" in p for p in gone) and any("'t_gone'" in p for p in gone)
    assert any("default 4" in p for p in check_options_table("dlsr", dlsr.replace("| `t` | score | `3` |", "| `t` | score | `4` |")))
    assert any("fit option" in p for p in check_options_table("dlsr", dlsr.replace("| `t` | score |", "| `t` | fit |")))
    # another layout (no stage column, unquoted defaults) is read the same way
    other = "## Options\n\n| option | default | meaning |\n|---|---|---|\n" + "\n".join(
        f"| `{o}` | {d} | x |" for o, (_, d, _) in method_options("knn").items()) + "\n\n## Cost\n"
    assert check_options_table("knn", other) == []
    assert any("default 7" in p for p in check_options_table("knn", other.replace("| `k` | 50 |", "| `k` | 7 |")))
    # shared groups may be documented elsewhere; the method's own options may not be left out
    assert set(own_options("knn")) == {"score", "k"} and "backbone" in method_options("knn")
    assert "t" in own_options("dlsr") and "backbone" not in own_options("dlsr")  # FeatureOptions: shared


def test_github_anchors():
    assert slug("Reference results: the embedded benchmark on a 2-core CPU") == \
        "reference-results-the-embedded-benchmark-on-a-2-core-cpu"
    assert slug("Timing methods: `ood-bench speed`") == "timing-methods-ood-bench-speed"
    assert slug("2. LMD (Liu et al., ICML 2023) — the pairs") == "2-lmd-liu-et-al-icml-2023--the-pairs"
    assert anchors("# A\n## A\n```bash\n# not a heading\n```\n") == {"a", "a-1"}
