"""Every document the repository cites is in the repository.

Code and notes once cited private notes that lived outside the repository, so a reader of a clone
could not follow them (issue 31). This scans every .py, .md, .sh and .toml file for paths ending in
``.md`` and checks that each one exists, relative to the citing file or to the repository root, and
that a ``#section`` anchor after a cited Markdown file names one of its headings (GitHub's anchor
rules). Pure text scanning: well under a second.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".sh", ".toml"}
#: folders never scanned: tooling, caches, environments, and run outputs (not the project's text)
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "runs",
}
SKIP_PATHS = {ROOT / "checkpoints" / "sweeps"}
#: a path ending in .md that does not start inside a longer token (a URL, another path); an optional anchor
CITATION = re.compile(r"(?<![\w/.:@-])((?:[\w.-]+/)*[\w.-]*\w\.md)(?![\w-])(#[\w-]+)?")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _text_files() -> list[Path]:
    out = []
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                if entry.name not in SKIP_DIRS and entry not in SKIP_PATHS and not entry.is_symlink():
                    stack.append(entry)
            elif entry.suffix in SUFFIXES and entry.resolve() != Path(__file__).resolve():
                out.append(entry)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation removed, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](link) -> text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeats get GitHub's -1, -2 suffixes)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    in_code = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        m = None if in_code else HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def citations(text: str) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)[1:] if m.group(2) else None) for m in CITATION.finditer(text)]


def test_the_scanner_finds_what_it_must() -> None:
    text = (
        "see methods.md §4, (docs/metrics.md#mig), [x](../checkpoints/README.md#results). "
        "https://github.com/o/r/blob/main/NOTES.md user@host.md f'{name}.md' a.mdx"
    )
    assert citations(text) == [
        ("methods.md", None),
        ("docs/metrics.md", "mig"),
        ("../checkpoints/README.md", "results"),
    ]
    assert slug("The QLAE `large` network") == "the-qlae-large-network"
    assert slug("Beta-VAE") == "beta-vae" and slug("Real 3dshapes.h5") == "real-3dshapesh5"


def test_every_cited_document_is_in_the_repository() -> None:
    missing: list[str] = []
    cache: dict[Path, set[str]] = {}
    for path in _text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for cited, anchor in citations(line):
                where = f"{path.relative_to(ROOT)}:{lineno}: {cited}{'#' + anchor if anchor else ''}"
                target = next((p for p in (path.parent / cited, ROOT / cited) if p.is_file()), None)
                if target is None:
                    missing.append(f"{where} (no such file in the repository)")
                    continue
                if anchor is not None:
                    key = target.resolve()
                    if key not in cache:
                        cache[key] = anchors(target)
                    if anchor not in cache[key]:
                        missing.append(f"{where} (no heading with that anchor in {cited})")
    assert not missing, "citations of documents that are not in the repository:\n" + "\n".join(missing)
