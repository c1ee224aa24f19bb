#!/usr/bin/env python3
"""Sum JUnit XML results into kvmsim's one-line test summary.

Usage: junit_summary.py [--failed-step LABEL]... [LABEL=]FILE...

Each FILE is a JUnit XML report (Catch2 v2's junit reporter, pytest's --junitxml, or any other
<testsuites>/<testsuite>/<testcase> document). LABEL names the run it came from (for instance
"release" or "sanitize"); the same file name in two runs is listed once per run.

Counts <testcase> elements (not the suite attributes: Catch2 v2 puts assertion counts there).
A testcase with a <failure> or <error> child is failed, one with <skipped> is skipped, any other
passed. A missing or unreadable file counts as one failure. --failed-step LABEL says that the
step producing LABEL exited non-zero; if its files show no failed testcase (a crash before the
report was written, a sanitizer report at exit, a timeout), that counts as one failure too.

Prints one line per file, then each failing testcase with its message, then exactly one line
    kvmsim: N passed, N failed[, N skipped]
Exit status: 0 if nothing failed and at least one test ran, else 1.
"""

import argparse
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

MAX_MESSAGE_LINES = 12


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)  # (name, message)

    def add(self, other):
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.failures += other.failures

    def text(self):
        s = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            s += f", {self.skipped} skipped"
        return s


def testcase_name(tc):
    name = tc.get("name", "?")
    classname = tc.get("classname", "")
    # Catch2 v2 uses "<executable>.global" for free test cases: noise, leave it out.
    if classname and not classname.endswith(".global"):
        return f"{classname}::{name}"
    return name


def failure_message(elem):
    message = (elem.get("message") or "").strip()
    text = (elem.text or "").strip()
    # Catch2 repeats the expression of the message attribute in the text: show it once.
    parts = [p for p in (message if message not in text else "", text) if p]
    lines = "\n".join(parts).splitlines() or [elem.tag]
    if len(lines) > MAX_MESSAGE_LINES:
        lines = lines[:MAX_MESSAGE_LINES] + ["..."]
    return "\n".join(lines)


def read_file(path):
    counts = Counts()
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        counts.failed = 1
        counts.failures.append((path, "no such file"))
        return counts
    except (ET.ParseError, OSError) as e:
        counts.failed = 1
        counts.failures.append((path, f"unreadable JUnit XML: {e}"))
        return counts
    for tc in root.iter("testcase"):
        bad = [c for c in tc if c.tag in ("failure", "error")]
        if bad:
            counts.failed += 1
            counts.failures.append(
                (testcase_name(tc), "\n".join(failure_message(c) for c in bad)))
        elif tc.find("skipped") is not None:
            counts.skipped += 1
        else:
            counts.passed += 1
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--failed-step", action="append", default=[], metavar="LABEL",
                    help="the step that produced LABEL exited non-zero")
    ap.add_argument("files", nargs="*", metavar="[LABEL=]FILE")
    args = ap.parse_args(argv)

    total = Counts()
    failed_labels = set()
    listing = []  # (label, file, Counts)
    for item in args.files:
        label, sep, path = item.partition("=")
        if not sep or "/" in label:
            label, path = "", item
        counts = read_file(path)
        listing.append((label, path, counts))
        if counts.failed:
            failed_labels.add(label)
    for label in args.failed_step:
        if label not in failed_labels:
            counts = Counts(failed=1, failures=[(
                f"{label} step",
                "exited non-zero but its JUnit report shows no failing testcase "
                "(build failure, crash, sanitizer report at exit, timeout, no tests collected...): see its output above",
            )])
            listing.append((label, "(step failed)", counts))
            failed_labels.add(label)

    width = max((len(label) for label, _, _ in listing), default=0)
    for label, path, counts in listing:
        prefix = f"{label:<{width}}  " if width else ""
        print(f"  {prefix}{path}: {counts.text()}")
        total.add(Counts(counts.passed, counts.failed, counts.skipped))

    failures = [(label, name, msg) for label, _, c in listing for name, msg in c.failures]
    if failures:
        print()
        for label, name, msg in failures:
            print(f"FAILED [{label}] {name}" if label else f"FAILED {name}")
            for line in msg.splitlines():
                print(f"    {line}")
    ran = total.passed + total.failed  # skipped tests did not run
    if ran == 0:
        print("no test ran")
    print(f"kvmsim: {total.text()}")
    return 0 if total.failed == 0 and ran > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
