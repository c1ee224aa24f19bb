#!/usr/bin/env python3
"""One JUnit testcase for test.sh's fuzz step, from libFuzzer's log.

Usage: fuzz_junit.py LOG OK(1|0) OUT.xml

The testcase names the executions done (libFuzzer's "stat::number_of_executed_units"); a
failing run carries the log's last lines (the crash or sanitizer report) as its failure."""

import re
import sys
from xml.sax.saxutils import escape, quoteattr

log_path, ok, out = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
try:
    log = open(log_path, encoding="utf-8", errors="replace").read()
except OSError as e:
    log, ok = f"no log: {e}", False
m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
runs = m.group(1) if m else "?"
name = f"fuzz_loader: {runs} executions"
body = "" if ok else f"<failure message=\"fuzz_loader found a failure\">{escape(log[-6000:])}</failure>"
with open(out, "w", encoding="utf-8") as f:
    f.write(f"<testsuites><testsuite name=\"fuzz\" tests=\"1\"><testcase classname=\"fuzz\" name={quoteattr(name)}>"
            f"{body}</testcase></testsuite></testsuites>\n")
print(f"fuzz: {name}" + ("" if ok else " (FAILED: see build-fuzz/fuzz.log)"))
