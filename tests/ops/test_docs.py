"""The documentation stays inside the repository and its links hold.

README.md is the front door and stays short; every relative link in the README,
DEVELOPERS.md, docs/, bench/README.md and bench/results/ names a file (or folder) of this
repository; and no document sends the reader to a folder beside it. No database needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 250
OUTSIDE = ("../shared", "shared folder")

# [text](target) and [text](target "title"); images too. Reference-style definitions
# ("[name]: target") are read separately.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # http:, mailto:, …


def documents() -> list[Path]:
    paths = [ROOT / "README.md", ROOT / "DEVELOPERS.md", ROOT / "bench" / "README.md"]
    paths += sorted((ROOT / "docs").glob("*.md"))
    paths += sorted((ROOT / "bench" / "results").glob("*.md"))
    return paths


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    body = prose(text)
    return INLINE_LINK.findall(body) + REFERENCE_LINK.findall(body)


def broken_links(document: Path, text: str | None = None) -> list[str]:
    """The relative links of `document` that name nothing in the repository."""
    text = document.read_text(encoding="utf-8") if text is None else text
    broken = []
    for target in links(text):
        if EXTERNAL.match(target):
            continue  # http(s), mailto and other schemes are not checked here
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not path:
            continue  # "#anchor": this same document
        resolved = (ROOT / path.lstrip("/")) if path.startswith("/") else document.parent / path
        resolved = resolved.resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    return broken


def test_every_document_exists():
    missing = [str(p.relative_to(ROOT)) for p in documents() if not p.is_file()]
    assert not missing, missing
    assert len(documents()) > 3, "docs/*.md found nothing"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document):
    assert broken_links(document) == [], f"{document.relative_to(ROOT)}: broken links"


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_points_outside_the_repository(document):
    text = document.read_text(encoding="utf-8").lower()
    found = [phrase for phrase in OUTSIDE if phrase in text]
    assert not found, f"{document.relative_to(ROOT)} mentions {found}"


def test_the_checker_finds_what_it_should(tmp_path):
    """The link check itself: a broken link, a link out of the repository and a missing
    file fail; anchors, external links and links in code are left alone."""
    docs = ROOT / "docs"
    text = "\n".join(
        [
            "[ok](api.md#errors) [ok](../README.md) [ok](#contents) [ok](https://example.com/x)",
            "[ok](mailto:someone@example.com) `[code](nowhere.md)`",
            "```",
            "[fenced](nowhere-either.md)",
            "```",
            "[bad](no-such-page.md) [bad](../../outside.md#x) [bad](../docs/gone.md)",
            "[ref]: missing-reference.md",
        ]
    )
    assert broken_links(docs / "example.md", text) == [
        "no-such-page.md",
        "../../outside.md#x",
        "../docs/gone.md",
        "missing-reference.md",
    ]
