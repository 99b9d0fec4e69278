"""The user guides stay true: docs/troubleshooting.md quotes messages the code really prints, and every relative
link of the guides and of the README resolves (the file exists, and so does the heading an anchor names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = [
    "getting-started.md",
    "custom-models.md",
    "troubleshooting.md",
    "spec.md",
    "cli.md",
    "architecture.md",
    "local.md",
    "operator.md",
    "environment.md",
]

# Fragments of messages quoted in docs/troubleshooting.md, each one literal of the code that prints it: when the
# code's wording changes, this fails and the page is updated with it.
QUOTED = [
    "is not a valid name: use at most 63 lower-case letters",
    "is not a quantity",
    "unknown field: remove it or check its spelling",
    "does not exist (a relative uri is read from the spec file's",
    "beside the spec file, or install the package that has it",
    "could not load its model",
    "for a free port, or stop what uses it)",
    "is already running (pid",
    "is not running (nothing answers in",
    "owns the replica count",
    "give --replicas N, or --min and/or --max for an autoscaled service",
    "No services are running",
    "queue is full (",
    "is at its concurrency limit (",
    "is larger than the limit of",
    "request timed out after",
    "unknown input",
    "no replica became ready within the router's buffer timeout",
    "bench failed: ",
    "above --max-error-rate",
    "no Kubernetes configuration found",
    "is larger than maxReplicas",
    "a request may not exceed its limit",
    "needs uri: the path of the model file or directory",
    "must be 'module:Class'",
]


def _source() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "src" / "kubeinfer").rglob("*.py"))


@pytest.mark.parametrize("fragment", QUOTED)
def test_troubleshooting_quotes_a_message_the_code_prints(fragment: str) -> None:
    assert fragment in (DOCS / "troubleshooting.md").read_text(), f"docs/troubleshooting.md no longer has {fragment!r}"
    assert fragment in _source(), f"no code prints {fragment!r} any more: update docs/troubleshooting.md"


def _anchors(page: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    out = set()
    for heading in re.findall(r"(?m)^#{1,6} (.+)$", page):
        out.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", [*(DOCS / g for g in GUIDES), ROOT / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text()
    text = re.sub(r"(?s)```.*?```", "", text)  # links inside code blocks are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        missing_anchor = (
            dest.exists() and bool(anchor) and dest.suffix == ".md" and anchor not in _anchors(dest.read_text())
        )
        if not dest.exists() or missing_anchor:
            broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)}: broken links {broken}"
