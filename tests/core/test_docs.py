"""The README a newcomer reads: the two commands first, short, and every relative link and picture in it and in
docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from explorer.core.registry import PAPER_IDS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# [text](target) and ![alt](target); the target ends at the first space (a title may follow) or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _strip_code(text: str) -> str:
    """Markdown without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _relative_targets(path: Path) -> list[str]:
    out = []
    for target in LINK.findall(_strip_code(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same page
        out.append(target.split("#", 1)[0])
    return out


def test_readme_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert lines[0].startswith("# ")
    block = lines[lines.index("```bash") + 1 :]
    assert block[0].startswith("bash scripts/run.sh") and block[1].startswith("bash scripts/test.sh")
    assert lines.index("```bash") <= 3, "the install/test commands come first"


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n < 200, f"README.md has {n} lines; move the detail to docs/"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_pictures_exist(doc):
    targets = _relative_targets(doc)
    if doc == README:
        assert any(t.endswith(".png") for t in targets), "the README shows a picture"
    missing = [t for t in targets if not (doc.parent / t).exists()]
    assert not missing, f"{doc.name}: links to missing files: {missing}"


def test_every_paper_has_its_page_linked_from_the_readme():
    targets = set(_relative_targets(README))
    for pid in PAPER_IDS:
        assert (ROOT / "docs" / f"{pid}.md").is_file(), f"docs/{pid}.md is missing"
        assert f"docs/{pid}.md" in targets, f"the README does not link docs/{pid}.md"


def test_the_link_check_sees_links():
    """The pattern finds links and pictures, and skips code."""
    sample = "![a](x.png) [b](../y.md#part) `[c](z.md)` [d](https://e.org)\n```\n[f](g.md)\n```\n"
    found = LINK.findall(_strip_code(sample))
    assert found == ["x.png", "../y.md#part", "https://e.org"]
