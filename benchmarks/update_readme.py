"""Copy the latest results of each benchmark (reports/benchmarks/NAME.md) into README.md.

Each result sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` in
benchmarks/README.md, so the committed numbers are always the ones a script wrote.

Usage: python benchmarks/update_readme.py
"""

import re
from pathlib import Path

from results import RESULTS

HERE = Path(__file__).resolve().parent


def main() -> None:
    readme = HERE / "README.md"
    text = readme.read_text()
    for result in sorted(RESULTS.glob("*.md")):
        name = result.stem
        pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.DOTALL)
        block = f"<!-- {name}:start -->\n{result.read_text().strip()}\n<!-- {name}:end -->"
        if pattern.search(text):
            text = pattern.sub(lambda _, block=block: block, text)
            print(f"updated {name}")
        else:
            print(f"no block for {name} in {readme}; skipped")
    readme.write_text(text)


if __name__ == "__main__":
    main()
