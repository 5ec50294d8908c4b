#!/usr/bin/env python3
"""Point every poolwatch alert's runbook_url at your copy of docs/runbook.md.

    python3 deploy/rules/runbook_base.py https://wiki.example.com/poolwatch-runbook

rewrites, in the alert rules and in their unit tests (which pin the annotations),
every ``runbook_url`` to ``BASE#<alert name in lower case>`` (the runbook's section
anchors) and the ``# runbook base:`` line. Without a URL it prints the current base.
Other files can be named after the URL (default: the shipped ones). Standard library
only, so it runs anywhere Python 3 does.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
FILES = (HERE / "poolwatch-alerts.yml", HERE / "tests" / "poolwatch-alerts.test.yml")
BASE_LINE = re.compile(r"^# runbook base: (\S+)$", re.MULTILINE)
URL = re.compile(r"runbook_url: \S+#(\w+)")


def current_base(rules: Path = FILES[0]) -> str:
    found = BASE_LINE.search(rules.read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit(f"{rules}: no '# runbook base:' line")
    return found.group(1)


def rewrite(base: str, files: tuple[Path, ...] = FILES) -> None:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise SystemExit(
            f"the runbook base must be an absolute http(s) URL without a #fragment, got {base!r}"
        )
    for path in files:
        text = path.read_text(encoding="utf-8")
        text = BASE_LINE.sub(f"# runbook base: {base}", text)
        text = URL.sub(lambda m: f"runbook_url: {base}#{m.group(1)}", text)
        path.write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    if not argv:
        print(current_base())
        return 0
    files = tuple(Path(name) for name in argv[1:]) or FILES
    rewrite(argv[0], files)
    print(f"runbook_url now starts with {argv[0]} in {', '.join(map(str, files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
