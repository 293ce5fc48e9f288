"""The README keeps its two commands (and CI runs the test one); every link in the docs resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("data", "training", "kd-dlgan", "stylegan2-fewshot", "compression", "evaluation", "benchmarks",
         "kd-evidence")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", markdown, re.M)}


def test_readme_holds_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "    pip install . && kdgan train --preset demo-kd --outdir runs/demo\n" in readme
    assert '    python -m pip install -e ".[test]" && python -m pytest\n' in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[test]" && python -m pytest' in ci


def test_every_reference_page_is_linked_from_the_readme_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES:
        assert f"](docs/{page}.md)" in readme, page
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            assert target.exists(), f"{doc.name}: {link}"
            if anchor:
                assert anchor in _anchors(target.read_text()), f"{doc.name}: {link}"
