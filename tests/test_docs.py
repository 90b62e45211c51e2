"""The README's and docs' links to files and sections of the project resolve."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, in_code = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(anchor(line.lstrip("#")))
    return found


def test_anchor_follows_githubs_rule():
    assert anchor("A build within 300 s") == "a-build-within-300-s"
    assert anchor("Behaviours, all four methods") == "behaviours-all-four-methods"
    assert anchor("The same with `sae_scale=4`") == "the-same-with-sae_scale4"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_local_link_names_a_file_and_heading_that_exist(doc):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):       # http(s), mailto: outside the project
            continue
        file, _, section = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif section and path.suffix == ".md" and section not in anchors(path):
            broken.append(f"{target}: no heading '{section}' in {path.name}")
    assert not broken, f"{doc.name} has broken links: " + "; ".join(broken)
