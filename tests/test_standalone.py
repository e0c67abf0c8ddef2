"""The repository stands alone: code cites only files it contains.

The paper facts and metric definitions once lived outside the repository (paper "cards", a
METRICS.md, a shared DESIGN.md). They are now `docs/metrics.md` and `docs/papers/*.md`; a
citation of the old files would send a reader to something they do not have.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("repro", "papers")

# Citations of files outside the repository. "card" is matched as a lower- or title-case word
# (not `discard`, not an identifier such as `card_x` or the constant `CARD`), and not where it
# means hardware.
OUTSIDE = re.compile(
    r"METRICS\.md|DESIGN\.md|(?<![\w.-])\.{0,2}/?shared/"
    r"|(?<![\w-])(?<!GPU )(?<!graphics )(?<!video )[Cc]ards?(?![\w-])")
# `docs/<path>.md`, optionally followed by ` §<section>`: a heading's number or first word (of a
# range such as §1-§8, the first).
DOC_CITATION = re.compile(r"docs/([\w./-]+?\.md)(?: §(\w+))?")


def _code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))


def _headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]


def test_code_cites_no_file_outside_the_repository():
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in _code_files()
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if OUTSIDE.search(line)]
    assert not hits, "citations of files outside the repository:\n" + "\n".join(hits)


def test_the_pattern_catches_the_old_citation_forms():
    for text in ("(card)", "the card's 'CNN' rows", "per the paper card", "Card: verified",
                 "METRICS.md §7", "shared/DESIGN.md", "`shared/papers/bowman2016.md`",
                 "../shared/data/ptb"):
        assert OUTSIDE.search(text), text
    for text in ("discarded", "CARD = x", "card_index", "one GPU card", "shared_metrics",
                 "docs/metrics.md §5"):
        assert not OUTSIDE.search(text), text


def test_every_cited_doc_and_section_exists():
    missing = []
    for path in _code_files():
        for match in DOC_CITATION.finditer(path.read_text()):
            doc, section = ROOT / "docs" / match.group(1), match.group(2)
            where = f"{path.relative_to(ROOT)}: {match.group(0)}"
            if not doc.is_file():
                missing.append(where)
            elif section and not any(re.match(rf"{re.escape(section)}\b", h) for h in _headings(doc)):
                missing.append(f"{where} (no heading starts with {section!r})")
    assert not missing, "cited docs or sections that do not exist:\n" + "\n".join(missing)
