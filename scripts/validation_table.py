#!/usr/bin/env python3
"""The Markdown table of docs/validation.md from the JSON `kvmsim check-published --json` wrote:

    build/sim/kvmsim check-published --jobs 2 --json docs/validation.json
    python3 scripts/validation_table.py docs/validation.json [MORE.json ...]

Several files (e.g. a default run and a `--all --only NAME` run of a skipped scenario) are
merged: a row that ran in a later file replaces the same row not run in an earlier one."""

import json
import sys


def fmt(v):
    if v is None:
        return "inf"
    return f"{v:.4g}"


def merged_rows(paths):
    rows, order = {}, []
    for p in paths:
        for r in json.load(open(p))["rows"]:
            key = (r["config"], r["pointer"])
            if key not in rows:
                order.append(key)
                rows[key] = r
            elif r["run"] and not rows[key]["run"]:
                rows[key] = r
    return [rows[k] for k in order]


def what(r):
    if "stat" in r:
        return f"stat {r['stat']}"
    return r["phase"] + (f" ({r['aggregate']})" if "aggregate" in r else "")


def table(rows):
    out = ["| configuration | phase | unit | published before / after | pub. ratio | simulated before / after | sim. ratio "
           "| sign | error | ≤1.5x | calib. |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        calib = "yes" if r["calibration"] else "no"
        p = r["published"]
        if r["kind"] == "change":
            pub, ratio = f"{fmt(p['before']['value'])} / {fmt(p['after']['value'])}", fmt(p["ratio"])
        else:
            pub, ratio = fmt(p["value"]), "–"
        if not r["run"]:
            why = "not expressible" if "not_expressible" in r else "not run"
            out.append(f"| {r['config']} | {what(r)} | {r['unit']} | {pub} | {ratio} | {why} | | | | | {calib} |")
            continue
        s = r["simulated"]
        if r["kind"] == "change":
            sim, sratio = f"{fmt(s['before'])} / {fmt(s['after'])}", fmt(s["ratio"])
            sign = "yes" if r["sign_right"] else "**no**"
        else:
            sim, sratio, sign = fmt(s["value"]), "–", "–"
        within = "yes" if r["within_1_5x"] else "**no**"
        out.append(f"| {r['config']} | {what(r)} | {r['unit']} | {pub} | {ratio} | {sim} | {sratio} | {sign} "
                   f"| {fmt(r['error_factor'])}x | {within} | {calib} |")
    return "\n".join(out)


def summary(rows):
    parts = []
    for calib, label in ((False, "non-calibration"), (True, "calibration")):
        run = [r for r in rows if r["run"] and r["calibration"] == calib]
        ch = [r for r in run if r["kind"] == "change"]
        parts.append(f"{label} rows: signs right {sum(r['sign_right'] for r in ch)}/{len(ch)}, "
                     f"within 1.5x {sum(r['within_1_5x'] for r in run)}/{len(run)}")
    not_run = sum(1 for r in rows if not r["run"] and "not_expressible" not in r)
    nx = sum(1 for r in rows if "not_expressible" in r)
    return "summary: " + "; ".join(parts) + (f"; not run: {not_run} rows" if not_run else "") + \
        (f"; not expressible: {nx} rows" if nx else "")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = merged_rows(sys.argv[1:])
    print(table(rows))
    print()
    print(summary(rows))
