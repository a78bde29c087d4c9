"""Every documented line runs (issue 27): the code blocks of README.md, docs/*.md and deploy/JETSON.md.

- Command lines (`toolkit ...`, `fog-daemon ...`, `python -m ...`, `python benchmarks/x.py ...`, `bash scripts/x`) in
  any block: each is parsed by the real argparse parser of its command (the cheap check for lines that would take
  minutes), so a flag that is gone, misspelt or on the wrong command fails here, named by file, block line and flag.
  Modules and scripts without an importable parser are checked against their own `--help`. Lines with `...` (a
  placeholder for more arguments) are checked flag by flag. Inline code spans `toolkit CMD --flag` in the prose are
  checked flag by flag too. Lines of other programs (trtexec, polygraphy, pip, sudo cp) are not ours to check.
- Python blocks run, each file's blocks in order in one namespace (a notebook), in a fresh folder that holds
  what the docs name as existing (PREPARED: a bundle at bundles/fog-small, recordings at data/...). docs/api.md's
  blocks are run by tests/test_api.py; a block needing ../shared is skipped (with the reason) where it is absent,
  one needing TensorRT always here.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "deploy" / "JETSON.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
OURS = ("toolkit", "fog-daemon")
RUN_ELSEWHERE = {"docs/api.md": "its blocks are a notebook run by tests/test_api.py::test_the_docs_notebook_runs"}


@dataclass
class Block:
    file: str            # relative to the repository
    line: int            # of the opening fence
    lang: str
    lines: list[str]

    def where(self, offset: int = 0) -> str:
        if self.lang == "inline":
            return f"{self.file}:{self.line + 1} (inline code)"
        return f"{self.file}:{self.line + 1 + offset} (the block at line {self.line})"


def blocks() -> list[Block]:
    out = []
    for path in DOCS:
        rel, lines = path.relative_to(REPO).as_posix(), path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if m:
                end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
                out.append(Block(rel, i + 1, m.group(2), lines[i + 1:end]))
                i = end
            i += 1
    return out


# ------------------------------------------------------------------ command lines

@dataclass
class Command:
    block: Block
    offset: int          # line within the block
    argv: list[str]      # program first (toolkit / fog-daemon / python -m X / python path / bash path)
    partial: bool        # a `...` placeholder: check flags only


def _logical_lines(block: Block):
    """(offset, text) with backslash continuations joined."""
    pending, start = "", 0
    for k, raw in enumerate(block.lines):
        if not pending:
            start = k
        text = raw.rstrip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        yield start, pending + text
        pending = ""
    if pending:
        yield start, pending


def _split(text: str) -> list[list[str]]:
    """The simple commands of a shell line: comments dropped, split at && || | ; and redirections removed."""
    lexer = shlex.shlex(text.replace("$ ", "", 1) if text.lstrip().startswith("$ ") else text, posix=True,
                        punctuation_chars=";&|<>")
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        tokens = list(lexer)
    except ValueError:                       # an unbalanced quote: prose, not a command
        return []
    commands, current, skip = [], [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token in (";", "&&", "||", "|", "&"):
            commands.append(current)
            current = []
        elif token in ("<", ">", ">>", "2>", "2>&1"):
            skip = True
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def _ours(argv: list[str]) -> list[str] | None:
    """argv from our program's name on, or None for another program."""
    while argv and (argv[0] in ("sudo", "env", "time", "nice") or argv[0].startswith("-") or "=" in argv[0]
                    and not argv[0].startswith("--")):
        argv = argv[1:]                      # sudo -u fog, env VAR=x, nice -n 5 ...
        if argv and argv[0] in ("fog",) and len(argv) > 1:
            argv = argv[1:]
    if not argv:
        return None
    name = Path(argv[0]).name
    if name in OURS:
        return [name, *argv[1:]]
    if name in ("python", "python3") and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2 and argv[2].split(".")[0] in (
                "toolkit", "deploy", "calibration", "models", "benchmarks", "scripts"):
            return argv
        if argv[1].endswith(".py") and argv[1].split("/")[0] in ("benchmarks", "scripts", "toolkit", "deploy"):
            return argv
    if name == "bash" and len(argv) > 1 and argv[1].startswith("scripts/"):
        return argv
    return None


INLINE = re.compile(r"(?<!`)`((?:toolkit|fog-daemon|python) [^`\n]*(?:\n[^`\n]*)?)`")   # may wrap once


def commands() -> list[Command]:
    """Every command line of ours in the docs' blocks, and in inline code spans of their prose (checked flag by
    flag: a span may leave arguments out)."""
    out = []
    for block in blocks():
        if block.lang == "python":
            continue
        for offset, text in _logical_lines(block):
            for argv in _split(text):
                mine = _ours(argv)
                if mine:
                    out.append(Command(block, offset, mine, "..." in mine))
    for path in DOCS:
        rel = path.relative_to(REPO).as_posix()
        prose = re.sub(r"(?ms)^\s*```.*?^\s*```\s*$", lambda m: "\n" * m.group(0).count("\n"), path.read_text())
        for found in INLINE.finditer(prose):
            span = found.group(1)
            mine = _ours(span.replace("[", " ").replace("]", " ").split())
            if mine:
                line = prose.count("\n", 0, found.start()) + 1
                out.append(Command(Block(rel, line - 1, "inline", [span]), 0, mine, True))
    return out


def _parser_for(argv: list[str]):
    """(argparse parser, argv for it) for our programs; (None, None) where the module has no importable parser."""
    from deploy.daemon_args import attach_sink_values
    from deploy.daemon_args import build_parser as daemon_parser
    from toolkit.cli import _prepared
    from toolkit.cli import build_parser as toolkit_parser
    if argv[0] == "toolkit" or argv[:3] in (["python", "-m", "toolkit"], ["python", "-m", "toolkit.cli"]):
        rest = argv[1:] if argv[0] == "toolkit" else argv[3:]
        return toolkit_parser(), _prepared(rest)
    if argv[0] == "fog-daemon" or argv[:3] in (["python", "-m", "deploy"], ["python", "-m", "deploy.daemon"]):
        rest = argv[1:] if argv[0] == "fog-daemon" else argv[3:]
        return daemon_parser(), attach_sink_values(rest)
    return None, None


@lru_cache(maxsize=None)
def _help_text(program: tuple[str, ...]) -> tuple[int, str]:
    """(exit status, output) of `program --help` (a module or script without a parser we can import)."""
    done = subprocess.run([sys.executable, *program[1:], "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    return done.returncode, done.stdout + done.stderr


def _flags(argv: list[str]) -> list[str]:
    """--long and -s flags (not '-', not a negative number)."""
    return [a.split("=", 1)[0] for a in argv if re.match(r"--[a-zA-Z]|-[a-zA-Z]$", a)]


def _subparser(parser, name: str):
    for action in parser._actions:
        if getattr(action, "choices", None) and isinstance(action.choices, dict) and name in action.choices:
            return action.choices[name]
    return None


def _known_flags(parser, argv: list[str]) -> set[str]:
    sub = _subparser(parser, argv[0]) if argv and not argv[0].startswith("-") else None
    chosen = sub or parser
    return {s for a in chosen._actions for s in a.option_strings}


def check_command(cmd: Command) -> str | None:
    """None when the line parses; else what is wrong, naming the file, line and flag."""
    argv = cmd.argv
    if argv[0] == "bash":
        return None if (REPO / argv[1]).is_file() else f"{cmd.block.where(cmd.offset)}: no such script {argv[1]}"
    parser, rest = _parser_for(argv)
    if parser is not None:
        if cmd.partial:
            unknown = [f for f in _flags(rest) if f not in _known_flags(parser, rest)]
            return f"{cmd.block.where(cmd.offset)}: `{' '.join(argv)}`: unknown flag(s) {unknown}" if unknown else None
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(rest)
            except SystemExit as exc:
                if exc.code not in (0, None):
                    said = err.getvalue().strip().splitlines()[-1:] or ["refused"]
                    return f"{cmd.block.where(cmd.offset)}: `{' '.join(argv)}`: {said[0]}"
        return None
    program = tuple(argv[:3]) if argv[1] == "-m" else tuple(argv[:2])
    if argv[1] != "-m" and not (REPO / argv[1]).is_file():
        return f"{cmd.block.where(cmd.offset)}: no such script {argv[1]}"
    if argv[1] == "-m" and importlib.util.find_spec(argv[2]) is None:
        return f"{cmd.block.where(cmd.offset)}: no such module {argv[2]}"
    if not _flags(argv[len(program):]):
        return None                          # it exists; nothing more to check without running it
    status, text = _help_text(program)
    if status != 0:
        return f"{cmd.block.where(cmd.offset)}: `{' '.join(program[1:])} --help` fails: {text.strip()[-300:]}"
    unknown = [f for f in _flags(argv[len(program):]) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    return f"{cmd.block.where(cmd.offset)}: `{' '.join(argv)}`: {unknown} not in its --help" if unknown else None


def test_the_docs_have_command_lines_of_every_kind():
    found = commands()
    kinds = {c.argv[0] if c.argv[0] != "python" else f"python {c.argv[1]}" for c in found}
    assert {"toolkit", "fog-daemon", "python -m"} <= kinds, kinds
    assert len(found) > 60


@pytest.mark.parametrize("doc", [d.relative_to(REPO).as_posix() for d in DOCS])
def test_every_documented_command_line_parses(doc):
    wrong = [problem for cmd in commands() if cmd.block.file == doc for problem in [check_command(cmd)] if problem]
    assert not wrong, "\n".join(wrong)


SHARED = ("--model", "--weights", "--bundle", "--json", "--json-out", "--plot", "--layout", "--quiet")
SHARED_BLOCK = re.compile(r"(<!-- shared-options -->\n)(.*?)(<!-- /shared-options -->)", re.S)


def shared_options_table() -> str:
    """docs/api.md's table: which command has which of the shared options, from the parsers themselves."""
    from toolkit.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(getattr(a, "choices", None), dict)).choices
    rows = ["| command | " + " | ".join(f"`{f}`" for f in SHARED) + " |", "| --- |" + " --- |" * len(SHARED)]
    for name, parser in sub.items():
        have = {s for a in parser._actions for s in a.option_strings}
        rows.append(f"| `{name}` | " + " | ".join("yes" if f in have else "" for f in SHARED) + " |")
    return "\n".join(rows) + "\n"


def test_the_shared_options_table_is_what_the_commands_take():
    page = (REPO / "docs" / "api.md").read_text()
    found = SHARED_BLOCK.search(page)
    assert found, "docs/api.md lost its <!-- shared-options --> block"
    assert found.group(2) == shared_options_table(), \
        "docs/api.md's shared-options table differs from the commands (rewrite it: python -m tests.test_docs " \
        "--write); it should read:\n" + shared_options_table()


# ------------------------------------------------------------------ python blocks

def python_blocks() -> dict[str, list[Block]]:
    out: dict[str, list[Block]] = {}
    for block in blocks():
        if block.lang == "python":
            out.setdefault(block.file, []).append(block)
    return out


PYTHON_DOCS = sorted(python_blocks())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A folder holding what the docs' snippets name as already there: a bundle at bundles/fog-small (the test
    stand-in, exported by the real exporter), a week-like cohort at data/unlabeled (synthetic, with metadata)."""
    from tests.helpers_bundle import make_bundle
    from toolkit.cli import main as toolkit
    root = tmp_path_factory.mktemp("docs")
    make_bundle(root / "bundles" / "fog-small")
    assert toolkit(["synth", "--subjects", "2", "--minutes", "1", "--seed", "3", "--out-dir",
                    str(root / "data" / "unlabeled")]) == 0
    return root


@pytest.mark.parametrize("doc", PYTHON_DOCS)
def test_every_python_block_runs(doc, prepared, tmp_path, monkeypatch):
    if doc in RUN_ELSEWHERE:
        pytest.skip(RUN_ELSEWHERE[doc])
    pytest.importorskip("torch")
    todo = python_blocks()[doc]
    text = "\n".join("\n".join(b.lines) for b in todo)
    if "tensorrt" in text and "import tensorrt" in text:
        pytest.skip(f"{doc}: needs TensorRT (not installable here)")
    if "../shared" in text and not (REPO.parent / "shared").is_dir():
        pytest.skip(f"{doc}: needs ../shared (absent: not part of a user's clone)")
    import shutil
    shutil.copytree(prepared, tmp_path / "work")
    monkeypatch.chdir(tmp_path / "work")
    namespace: dict = {"__name__": "__doc__"}
    for block in todo:
        code = "\n".join(block.lines)
        try:
            exec(compile(code, block.where(), "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{block.where()}: {type(exc).__name__}: {exc}") from exc


if __name__ == "__main__":      # python -m tests.test_docs --write: docs/api.md's shared-options table anew
    if sys.argv[1:] == ["--write"]:
        api_md = REPO / "docs" / "api.md"
        page = api_md.read_text()
        found = SHARED_BLOCK.search(page)
        api_md.write_text(page[:found.start(2)] + shared_options_table() + page[found.end(2):])
