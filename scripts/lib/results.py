#!/usr/bin/env python3
"""Test counts from what the runners write for machines, never from free text.

    results.py junit [--name=NAME] XML...
                                       one pytest suite: `NAME: N passed, M failed`
                                       (`, K skipped` if any) from its JUnit XML files
    results.py cargo LOG               `cargo test: N passed, M failed` from cargo's own
                                       `test result:` lines in LOG
    results.py total [--suffix=TEXT] DIR NAME...
                                       scripts/test.sh's closing table and count over
                                       DIR/NAME/ (one folder per suite, in run order)

A suite's folder (scripts/test.sh `suite`, exported to the suite as
NBSERVE_RESULTS) holds `status`, the suite's exit status, and its results:
`*.xml`, pytest's JUnit XML (scripts/lib/pytest.sh `pytest_suite` writes
them), and `*.cargo.log`, the output of `cargo test`. A suite that
exits non-zero with no failure counted, or leaves no results at all, counts
one failure more: a crash before the first test is a failure, not an empty
success.

Skipped pytest tests and ignored cargo tests are reported as skipped, never as
passed. Standard library only (any python3).
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

CARGO_LINE = re.compile(
    r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored; \d+ measured; \d+ filtered out"
)


class Count:
    """Passed, failed and skipped tests, plus why failures were added."""

    def __init__(self, passed: int = 0, failed: int = 0, skipped: int = 0):
        self.passed, self.failed, self.skipped = passed, failed, skipped
        self.notes: list[str] = []

    def add(self, other: "Count") -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.notes += other.notes

    def line(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return f"{self.passed} passed, {self.failed} failed{skipped}"


def junit(path: Path) -> Count:
    """Counts one JUnit XML file test case by test case: a case with a
    <failure> or <error> (also one raised in a fixture's set-up or tear-down)
    failed, one with <skipped> was skipped, any other passed."""
    count = Count()
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        count.failed += 1
        count.notes.append(f"{path.name}: unreadable JUnit XML ({err})")
        return count
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            count.failed += 1
        elif "skipped" in tags:
            count.skipped += 1
        else:
            count.passed += 1
    # A collection error (a test module that does not import) has no test case.
    for suite in root.iter("testsuite"):
        cases = sum(1 for _ in suite.iter("testcase"))
        if cases == 0 and int(suite.get("errors", 0)):
            count.failed += int(suite.get("errors", 0))
            count.notes.append(f"{path.name}: {suite.get('errors')} error(s) outside any test")
    return count


def cargo(path: Path) -> Count:
    """Sums cargo's `test result:` lines (one per test binary and doc-tests);
    ignored tests count as skipped."""
    count = Count()
    for line in path.read_text(errors="replace").splitlines():
        m = CARGO_LINE.match(line.strip())
        if m:
            count.passed += int(m[1])
            count.failed += int(m[2])
            count.skipped += int(m[3])
    return count


def suite(folder: Path) -> Count:
    """One suite of scripts/test.sh: its results and its exit status."""
    count = Count()
    found = False
    for xml in sorted(folder.glob("*.xml")):
        count.add(junit(xml))
        found = True
    for log in sorted(folder.glob("*.cargo.log")):
        count.add(cargo(log))
        found = True
    try:
        status = int((folder / "status").read_text().strip() or 1)
    except (OSError, ValueError):
        status = 1
    if not found:
        count.failed += 1
        count.notes.append(f"left no machine-readable results (exit status {status}): counted as 1 failed")
    elif status != 0 and count.failed == 0:
        count.failed += 1
        count.notes.append(f"exited {status} with no failure counted: counted as 1 failed")
    return count


def total(folder: Path, names: list[str], suffix: str) -> int:
    grand = Count()
    for name in names:
        count = suite(folder / name)
        for note in count.notes:
            print(f"test.sh: {name} {note}")
        try:
            took = f"  ({int((folder / name / 'seconds').read_text()):>4} s)"
        except (OSError, ValueError):
            took = ""
        print(f"  {name:<14} {count.line()}{took}")
        grand.add(count)
    print()
    print(f"tests: {grand.line()}{suffix}")
    return 1 if grand.failed else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "junit":
        prefix, files = "", argv[1:]
        if files[0].startswith("--name="):
            prefix, files = files[0].split("=", 1)[1] + ": ", files[1:]
        count = Count()
        for arg in files:
            count.add(junit(Path(arg)))
        for note in count.notes:
            print(note, file=sys.stderr)
        print(prefix + count.line())
        return 1 if count.failed else 0
    if len(argv) == 2 and argv[0] == "cargo":
        count = cargo(Path(argv[1]))
        print(f"cargo test: {count.passed} passed, {count.failed} failed"
              + (f" ({count.skipped} ignored)" if count.skipped else ""))
        return 1 if count.failed else 0
    if len(argv) >= 2 and argv[0] == "total":
        suffix = ""
        rest = argv[1:]
        if rest[0].startswith("--suffix="):
            suffix, rest = rest[0].split("=", 1)[1], rest[1:]
        return total(Path(rest[0]), rest[1:], suffix)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
