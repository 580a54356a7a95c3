"""Where every benchmark leaves its results: reports/benchmarks/NAME.json and NAME.md.

update_readme.py copies the Markdown into benchmarks/README.md; both files are written
whole or not at all, so an interrupted benchmark never leaves a half-written table.
"""

import json

from roicast import paths
from roicast.runs.artefacts import atomic_path

RESULTS = paths.REPO_ROOT / "reports" / "benchmarks"


def _plain(value):
    """numpy scalars as Python numbers; anything else JSON lacks (dates, paths) as text."""
    return value.item() if hasattr(value, "item") else str(value)


def save_results(name: str, data, markdown: str) -> None:
    """Write NAME.json (the raw measurements) and NAME.md (the table), then print the table."""
    markdown = markdown.rstrip("\n") + "\n"
    for path, text in ((RESULTS / f"{name}.json", json.dumps(data, indent=2, default=_plain) + "\n"),
                       (RESULTS / f"{name}.md", markdown)):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    print(markdown, end="")
