"""Documents that cannot drift: ARCHITECTURE.md's layout list against the tree, and no
document, docstring or comment that names a file (or a Markdown link, or an anchor) the
repository does not have."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the folders whose every .py file the layout list names (static/: vendored Swagger UI, no .py)
PACKAGES = ("gan_serve", "training", "export", "benchmarks", "scripts")
# a repository-relative path starts with one of these; anything else (`/shared/out`,
# `runs/faces`, `g_epoch_85.pth`, URLs) is an example of the user's, not a file of ours
TOP = ("gan_serve", "training", "export", "benchmarks", "tests", "scripts", "docs", "runstate")
FILE_REF = re.compile(
    r"(?<![\w./~:-])"  # not the tail of a longer path, a URL or a home folder
    r"((?:" + "|".join(TOP) + r")/[\w./-]*[\w/]|[A-Z][A-Z0-9_]*\.md)"
    r"(?![\w{*<])"  # not a pattern such as repo/g{,_latents} or docs/*.png
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def documents() -> list[Path]:
    """The root *.md files and every *.md under docs/ and runstate/."""
    found = sorted(ROOT.glob("*.md"))
    for folder in ("docs", "runstate"):
        found += sorted((ROOT / folder).rglob("*.md"))
    return found


def python_files() -> list[Path]:
    return sorted(p for top in PACKAGES + ("tests",) for p in (ROOT / top).rglob("*.py")
                  if "__pycache__" not in p.parts)


def layout_block(text: str) -> list[str]:
    """The lines of the first fenced block under ARCHITECTURE.md's "## Layout" heading."""
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1].strip("\n").splitlines()


def layout_paths(lines: list[str]) -> set[str]:
    """The paths a two-space-indented tree names: a name ending in "/" opens a folder."""
    paths: set[str] = set()
    stack: list[str] = []
    for line in lines:
        name = line.split()[0]
        depth = (len(line) - len(line.lstrip(" "))) // 2
        stack[depth:] = [name]
        paths.add("".join(stack))
    return paths


def package_modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for top in PACKAGES for p in (ROOT / top).rglob("*.py")
            if "__pycache__" not in p.parts}


def comments_and_docstrings(source: str) -> str:
    """What a reader sees of a module besides its code: comments and docstrings."""
    parts = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            parts.append(ast.get_docstring(node, clean=False) or "")
    return "\n".join(parts)


def prose(text: str) -> str:
    """A Markdown text with its link targets taken out (they are checked relative to the file)."""
    return LINK.sub("", text)


def missing_files(text: str) -> set[str]:
    return {ref for ref in FILE_REF.findall(text) if not (ROOT / ref).exists()}


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lower case, punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            base = slug(line.lstrip("#"))
            n = seen.get(base, 0)
            seen[base] = n + 1
    return {base if i == 0 else f"{base}-{i}" for base, n in seen.items() for i in range(n)}


def broken_links(doc: Path) -> list[str]:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no such heading in {path.name})")
    return broken


def test_layout_names_every_module() -> None:
    listed = layout_paths(layout_block((ROOT / "ARCHITECTURE.md").read_text()))
    assert sorted(package_modules() - listed) == [], "modules missing from ARCHITECTURE.md's layout"


def test_layout_names_only_what_exists() -> None:
    listed = layout_paths(layout_block((ROOT / "ARCHITECTURE.md").read_text()))
    assert sorted(p for p in listed if not (ROOT / p).exists()) == []


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_document_names_only_existing_files(doc: Path) -> None:
    assert sorted(missing_files(prose(doc.read_text()))) == []


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_document_links_resolve(doc: Path) -> None:
    assert broken_links(doc) == []


def test_code_names_only_existing_files() -> None:
    missing = {f"{p.relative_to(ROOT)}: {ref}" for p in python_files()
               for ref in missing_files(comments_and_docstrings(p.read_text()))}
    assert sorted(missing) == []


def test_the_checks_see_what_they_must() -> None:
    """The patterns find a missing file and a broken anchor, and leave users' paths alone."""
    text = ("the tolerances of DESIGN.md; gan_serve/nowhere.py; see tests/gan_serve/ and "
            "README.md; /shared/out, ~/.cache/gan_serve/x, runs/faces/ckpt, g_epoch_85.pth, "
            "https://example.com/docs/x.png, repo/g_epoch_85{,_latents}/, docs/*.png")
    assert missing_files(text) == {"DESIGN.md", "gan_serve/nowhere.py"}
    assert layout_paths(["a/  x", "  b.py  y", "  c/", "    d.py", "e.py"]) == {
        "a/", "a/b.py", "a/c/", "a/c/d.py", "e.py"}
    assert slug("Replicas on Ray Serve: `gan-serve serve --ray`") == (
        "replicas-on-ray-serve-gan-serve-serve---ray")
    assert slug("The contracts (in full: [ARCHITECTURE.md](ARCHITECTURE.md))") == (
        "the-contracts-in-full-architecturemd")
