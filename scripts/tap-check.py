#!/usr/bin/env python3
"""Judge a TAP stream with nested subtests (TAP 13/14, kselftest style).

    scripts/tap-check.py [--allow-skip] [--counts FILE] [--name NAME] TAP_FILE

Checks, at every nesting level: a plan is present and the number of test
points matches it, test points are numbered 1..N in order, no "not ok", no
"Bail out!", no SKIP unless --allow-skip, and a parent that says "ok" has no
failed subtest. A subtest block is the lines indented by four more spaces
than its parent, ending at the parent's test point ("ok N name").

Prints one line per problem ("tap: NAME: ...") and, with --counts, writes
"PASSED FAILED SKIPPED" over the leaf test points (a point with subtests is
counted through its subtests; a failing parent with passing subtests counts
as one more failure). Exit 0 when there is no problem, 1 otherwise.
"""
import argparse
import re
import sys

POINT = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(.*)$")
PLAN = re.compile(r"^1\.\.(\d+)\b")
SKIP = re.compile(r"#\s*SKIP\b", re.IGNORECASE)
TODO = re.compile(r"#\s*TODO\b", re.IGNORECASE)


class Result:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.problems = []


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def parse_block(lines, start, depth, path, res, allow_skip):
    """Parse the block at `depth` (4*depth spaces) from lines[start:].

    Returns (index after the block, block failed?, block is TAP?): a deeper
    block with neither a plan nor a test point is a program's indented text,
    not a subtest."""
    pad = 4 * depth
    plan = None
    seen = 0
    failed = False
    i = start
    pending_sub = None  # (failed?, leaves) of the subtest block before a point
    while i < len(lines):
        raw = lines[i]
        if raw.strip() == "":
            i += 1
            continue
        ind = indent_of(raw)
        if ind < pad:
            break  # the parent's test point (or the parent's next line)
        if ind > pad:
            if ind >= pad + 4:
                before = (res.passed, res.failed, res.skipped)
                i, sub_failed, is_tap = parse_block(lines, i, depth + 1, path + [f"#{seen + 1}"], res, allow_skip)
                after = (res.passed, res.failed, res.skipped)
                leaves = sum(after) - sum(before)
                if is_tap:
                    pending_sub = (sub_failed, leaves)
                continue
            i += 1  # odd indentation: not TAP, ignored as TAP says
            continue
        line = raw[pad:]
        i += 1
        if line.startswith("#") or line.startswith("TAP version"):
            continue
        if line.startswith("Bail out!"):
            res.problems.append(f"{'/'.join(path)}: {line}")
            res.failed += 1
            return len(lines), True, True
        m = PLAN.match(line)
        if m:
            if plan is not None:
                res.problems.append(f"{'/'.join(path)}: a second plan '{line}'")
                failed = True
            plan = int(m.group(1))
            continue
        m = POINT.match(line)
        if not m:
            if depth == 0:
                res.problems.append(f"{'/'.join(path)}: not TAP: '{line[:80]}'")
                failed = True
            continue
        seen += 1
        ok = m.group(1) == "ok"
        num = int(m.group(2)) if m.group(2) else None
        desc = m.group(3)
        where = "/".join(path + [f"{seen} {desc.split(' #')[0].strip()}"])
        if num is not None and num != seen:
            res.problems.append(f"{where}: numbered {num}, expected {seen}")
            failed = True
        sub = pending_sub
        pending_sub = None
        is_skip = bool(SKIP.search(desc))
        if TODO.search(desc):
            res.problems.append(f"{where}: TODO test points are not allowed")
            failed = True
        if sub is not None:
            sub_failed, leaves = sub
            if ok and sub_failed:
                res.problems.append(f"{where}: says ok but its subtests failed")
                failed = True
            elif not ok:
                failed = True
                if not sub_failed:
                    # The program failed (exit status) though its points passed.
                    res.failed += 1
                    res.problems.append(f"{where}: {desc}")
            if is_skip and not allow_skip:
                res.problems.append(f"{where}: skipped, and skipping is not allowed here")
                failed = True
            if leaves == 0 and ok and not is_skip:
                res.problems.append(f"{where}: its subtests printed no test point")
                failed = True
            continue
        if not ok:
            res.failed += 1
            res.problems.append(f"{where}: not ok")
            failed = True
        elif is_skip:
            res.skipped += 1
            if not allow_skip:
                res.problems.append(f"{where}: skipped, and skipping is not allowed here")
                failed = True
        else:
            res.passed += 1
    if plan is None and seen == 0 and depth > 0 and not failed:
        return i, False, False
    if pending_sub is not None:
        res.problems.append(f"{'/'.join(path)}: a subtest block with no test point after it")
        failed = True
    if plan is None:
        res.problems.append(f"{'/'.join(path)}: no plan (1..N)")
        failed = True
    elif seen != plan:
        res.problems.append(f"{'/'.join(path)}: plan 1..{plan} but {seen} test points")
        res.failed += max(plan - seen, 0)
        failed = True
    return i, failed, True


def check(text, name="tap", allow_skip=False):
    lines = [l.replace("\r", "").replace("\t", "    ") for l in text.split("\n")]
    res = Result()
    parse_block(lines, 0, 0, [name], res, allow_skip)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--allow-skip", action="store_true")
    ap.add_argument("--counts")
    ap.add_argument("--name", default="tap")
    ap.add_argument("file")
    a = ap.parse_args()
    try:
        with open(a.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        print(f"tap: {a.name}: cannot read the TAP stream: {e}")
        text = ""
    res = check(text, a.name, a.allow_skip)
    if a.counts:
        with open(a.counts, "w") as f:
            f.write(f"{res.passed} {res.failed} {res.skipped}\n")
    for p in res.problems:
        print(f"tap: {p}")
    return 1 if res.problems else 0


if __name__ == "__main__":
    sys.exit(main())
