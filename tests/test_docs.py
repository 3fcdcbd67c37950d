"""The documentation says what the code does.

- the generated reference pages (docs/reference/) equal what scripts/gen_docs.py makes from the
  code now: a changed command, option, registry entry or schema fails here until the pages are
  regenerated;
- every relative link in docs/ (and README.md) points at a file that exists, and mkdocs.yml's nav
  lists every page (``mkdocs build --strict`` in CI checks anchors too);
- every ``leakaudit …`` command line in README.md and docs/ is a valid spelling: its command path
  exists in the click command tree and each ``--option`` exists for that command (nothing runs).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen_docs = _gen_docs()


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _texts() -> list[Path]:
    return [ROOT / "README.md", *_pages()]


def _written_texts() -> list[Path]:
    """The hand-written texts (the generated reference holds usage lines, not examples)."""
    generated = {DOCS / page for page in gen_docs.PAGES}
    return [p for p in _texts() if p not in generated]


# ---------------------------------------------------------------- generated reference


@pytest.mark.parametrize("page", sorted(gen_docs.PAGES))
def test_generated_reference_is_current(page):
    text = gen_docs.PAGES[page]()
    committed = (DOCS / page).read_text(encoding="utf-8") if (DOCS / page).is_file() else None
    assert committed == text, (f"docs/{page} differs from what the code gives now: "
                               "run scripts/gen_docs.py (PYTHONPATH=src python scripts/gen_docs.py)")


def test_cli_reference_lists_every_command_and_option():
    """Independent of the generator's formatting: every visible command path and option name of
    the click tree appears in the CLI page."""
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    n_opts = 0
    for path, cmd, ctx in gen_docs.walk_commands():
        assert f"## `{' '.join(path)}`" in page, path
        for p in cmd.get_params(ctx):
            if not getattr(p, "hidden", False) and p.param_type_name == "option":
                for o in p.opts:
                    assert f"`{o}" in page.split(f"## `{' '.join(path)}`", 1)[1], (path, o)
                    n_opts += 1
    assert n_opts > 100  # the app has well over a hundred options; a broken walk finds few


def test_drift_is_detected(tmp_path, monkeypatch):
    """Negative control: a committed page that differs by one option's help is reported stale."""
    pages = gen_docs.generate()
    monkeypatch.setattr(gen_docs, "DOCS", tmp_path)
    for p, text in pages.items():
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text(text, encoding="utf-8")
    assert gen_docs.stale(pages) == []
    cli = tmp_path / "reference" / "cli.md"
    cli.write_text(cli.read_text(encoding="utf-8").replace("Output folder.", "Output dir.", 1),
                   encoding="utf-8")
    assert gen_docs.stale(pages) == ["reference/cli.md"]
    assert gen_docs.main(["--check"]) == 1


# ---------------------------------------------------------------- links and nav

LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _links(md: Path) -> list[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return [m.group(1) for m in LINK.finditer(text)]


def _broken_links(md: Path) -> list[str]:
    bad = []
    for link in _links(md):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith("#"):
            continue  # external (https:, mailto:) or an anchor on the same page
        target = (md.parent / link.split("#", 1)[0]).resolve()
        if not target.exists():
            bad.append(link)
    return bad


@pytest.mark.parametrize("md", _texts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md):
    assert _broken_links(md) == [], f"{md.relative_to(ROOT)}: broken links"


def test_broken_link_is_found(tmp_path):
    (tmp_path / "a.md").write_text("[ok](b.md) [ok2](b.md#x) [web](https://x.org) [bad](c.md)\n"
                                   "```\n[in code](nope.md)\n```\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# b\n", encoding="utf-8")
    assert _broken_links(tmp_path / "a.md") == ["c.md"]


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for x in node for p in _nav_pages(x)]
    if isinstance(node, dict):
        return [p for x in node.values() for p in _nav_pages(x)]
    return []


def test_nav_lists_every_page():
    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(cfg["nav"])
    pages = [str(p.relative_to(DOCS)) for p in _pages()]
    assert sorted(set(pages) - set(nav)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(nav) - set(pages)) == [], "nav entries with no page"
    assert len(nav) == len(set(nav)), "a page is listed twice in the nav"


# ---------------------------------------------------------------- command lines

CMD_START = re.compile(r"(?:^|[\s`(/])leakaudit\s+(?=[-a-z])")


SHELL = {"", "bash", "sh", "shell", "console", "text"}


def _code_blocks(text: str) -> list[str]:
    """Fenced blocks of shell commands (a ```python or ```toml block is not a command line)."""
    return [m.group(0) for m in FENCE.finditer(text)
            if m.group(0).splitlines()[0].strip("`~ ").lower() in SHELL]


def command_lines(text: str) -> list[str]:
    """``leakaudit …`` invocations in a Markdown text: lines of fenced code blocks (with ``\\``
    continuations joined, comments dropped) and inline code spans that start a command."""
    found = []
    for block in _code_blocks(text):
        body = "\n".join(block.splitlines()[1:-1]).replace("\\\n", " ")
        for line in body.splitlines():
            line = line.split(" #", 1)[0]
            for m in CMD_START.finditer(line):
                found.append(_cut(line[m.end():]))
    prose = FENCE.sub("", text)
    for span in re.findall(r"`([^`]+)`", prose.replace("\n", " ")):
        m = re.match(r"^(?:\S*/)?leakaudit\s+(?=[-a-z])", span)
        if m:
            found.append(_cut(span[m.end():]))
    return found


def _cut(rest: str) -> str:
    """One command: up to a shell separator (``&&``, ``;``, ``|`` with spaces)."""
    return " ".join(re.split(r"\s(?:&&|;|\|\||\|)\s", rest, maxsplit=1)[0].split())


@functools.lru_cache(maxsize=1)
def _tree():
    return gen_docs.command_tree()


def _options(cmd, ctx) -> dict[str, object]:
    return {o: p for p in cmd.get_params(ctx) for o in [*p.opts, *p.secondary_opts]
            if p.param_type_name == "option"}


def check_command(args: str) -> str | None:
    """Why ``leakaudit ARGS`` is not a valid spelling, or None. Walks the click tree: at a group
    an option must be the group's own and a word must be one of its subcommands; at a command
    every ``--option`` must be one of its options. Option values are skipped."""
    try:
        tokens = shlex.split(args)
    except ValueError as e:
        return f"cannot split: {e}"
    cmd = _tree()
    path = ["leakaudit"]
    ctx = cmd.context_class(cmd, info_name="leakaudit")
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("...", "…") or tok.startswith("$("):
            return None
        if tok.startswith("-"):
            name = tok.split("=", 1)[0]
            opts = _options(cmd, ctx)
            if name not in opts:
                return f"{' '.join(path)} has no option {name}"
            p = opts[name]
            i += 1 if (getattr(p, "is_flag", False) or "=" in tok) else 2
            continue
        if hasattr(cmd, "list_commands"):
            if re.fullmatch(r"[A-Z][A-Z_]*", tok):
                return None  # a placeholder: `leakaudit --share CMD …`
            sub = cmd.get_command(ctx, tok)
            if sub is None:
                return f"{' '.join(path)} has no command {tok!r}"
            cmd, path = sub, [*path, tok]
            ctx = cmd.context_class(cmd, info_name=tok, parent=ctx)
        i += 1
    return None


def test_command_checker_negative_controls():
    assert check_command("lab --quick --out x") is None
    assert check_command("--overwrite lab --quick") is None
    assert check_command("endpoint audit openai-completions:http://h/v1 --replica http://g/v1") is None
    assert check_command("lab --no-such-option") == "leakaudit lab has no option --no-such-option"
    assert check_command("no-such-command --x") == "leakaudit has no command 'no-such-command'"
    assert check_command("canaries exposur --model m").startswith("leakaudit canaries has no command")
    assert check_command("--share CMD --whatever") is None  # a placeholder command
    assert check_command("extract --model m --samples --out x") is None  # '--out' read as a value: not judged
    found = command_lines("text `leakaudit lab --quick` and\n```bash\nx && .venv/bin/leakaudit lab \\\n"
                          "   --out y   # comment --bogus\nleakaudit.targets is a module\n```\n"
                          "```python\nimport leakaudit as la\n```\n")
    assert sorted(found) == ["lab --out y", "lab --quick"]


@functools.lru_cache(maxsize=1)
def _all_command_lines() -> list[tuple[str, str]]:
    return [(str(f.relative_to(ROOT)), c) for f in _written_texts()
            for c in command_lines(f.read_text(encoding="utf-8"))]


def test_docs_have_command_lines():
    assert len(_all_command_lines()) > 50


@pytest.mark.parametrize("where,args", _all_command_lines(),
                         ids=[f"{w}:{a[:40]}" for w, a in _all_command_lines()])
def test_command_lines_are_valid_spellings(where, args):
    assert check_command(args) is None, f"{where}: `leakaudit {args}`: {check_command(args)}"


# ---------------------------------------------------------------- the README


def test_readme_is_a_short_front_door():
    """At most 150 lines, with the exact test command .ci/run runs, and links into the docs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    test_cmd = "bash scripts/setup.sh --test && .venv/bin/python -m pytest"
    assert test_cmd in readme and test_cmd in ci
    assert len([link for link in _links(ROOT / "README.md") if link.startswith("docs/")]) >= 10
