"""The documentation stands alone: a short README that starts with the two commands, relative
links that resolve, and code that cites only files in the repository (docs/design.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SKIP_DIRS = {".git", ".venv", ".cache", "__pycache__", "build", "demo_out", "bench_out",
             ".pytest_cache", ".ruff_cache", "node_modules"}

#: [text](target) — the target up to whitespace or ")"; images (![alt](src)) included
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
#: a design document cited without the repository's docs/ prefix, or a file beside the checkout
BARE_DESIGN = re.compile(r"(?<!docs/)design\.md", re.I)
OUTSIDE = re.compile(r"\.\./shared|(?<![\w/.])shared/[A-Za-z_]+\.md")


def _walk(suffix: str) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        found += [Path(dirpath) / f for f in filenames if f.endswith(suffix)]
    return sorted(found)


def _markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _relative_links(md: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", md.read_text(encoding="utf-8")))
    links = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, https:, mailto:, or an anchor on the same page
        links.append(target)
    return links


def test_readme_is_short() -> None:
    size = README.stat().st_size
    assert size < 20480, f"README.md is {size} bytes; move detail into docs/ (limit 20480)"


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:40])
    for command in ("make demo", "make test"):
        assert command in head, f"README.md must show `{command}` within its first 40 lines"


def test_relative_links_resolve() -> None:
    broken = []
    for md in _markdown_files():
        for target in _relative_links(md):
            path = target.split("#", 1)[0].split("?", 1)[0]
            if path and not (md.parent / path).exists():
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_code_cites_only_files_in_the_repository() -> None:
    bad = []
    for py in _walk(".py"):
        for n, line in enumerate(py.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if BARE_DESIGN.search(line) or OUTSIDE.search(line):
                bad.append(f"{py.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "cite docs/design.md (or another file in the repository):\n" + "\n".join(bad)
