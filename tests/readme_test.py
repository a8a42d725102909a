#!/usr/bin/env python3
"""CTest readme_commands: the shell commands in README.md and docs/*.md run as shown.

Every ```sh / ```bash block in README.md and docs/*.md (README first, then docs/ in
name order; blocks in file order) is either run or marked as not run. The marks are HTML
comments on the line just before the block's opening fence:

  <!-- not run in CI: REASON -->
      The block is skipped. REASON must be given ("needs a GPU", "takes an hour",
      "CI runs the set-up itself", ...); a mark without one fails the test.

  <!-- run in CI with: FLAGS -->
      The block runs, with FLAGS appended to every `kdtrain` invocation in it (at the end
      of that command, before any `|`, `>`, `&&`, `;` or `#` that follows it). This is the
      only rewriting the test does, and it is visible in the document: a block without
      the mark runs exactly as written, so it must be fast as shown.

A block is run from the repository root, one command at a time (a line; a line ending
in `\\` continues on the next), each by `bash -c` with `$KD_BINARY_DIR` (default
`build/`) first on PATH, so `kdtrain` is the build's binary. No shell state carries from
one command to the next (no `cd`, no variables). Blocks write under `runs/` (git-ignored):
every `--out DIR` in a run block must be under `runs/`, and those directories are removed
before the block runs. A command with a non-zero exit fails the test, naming the file,
the line and the command, with the end of its output.

Quoted output: a ```text block whose preceding line is `<!-- output of the block above -->`
is checked against what the block just before it printed (stdout and stderr of all its
commands). The rule, loose on purpose: every non-blank line of the quoted block must occur
as a line of the output, in the same order (other lines may come between), after runs of
whitespace are collapsed to one space, ends trimmed, and any number (digits with optional
sign, thousands commas, decimal point, exponent) matches any number. A quoted line that
is just `...` matches nothing and is skipped: use it to show that lines were left out.

Run directly: `KD_BINARY_DIR=build python3 tests/readme_test.py`.
"""
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_RUN = re.compile(r"^<!--\s*not run in CI\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$")
RUN_WITH = re.compile(r"^<!--\s*run in CI with:\s*(?P<flags>.*?)\s*-->\s*$")
OUTPUT_OF = re.compile(r"^<!--\s*output of the block above\s*-->\s*$")
FENCE_OPEN = re.compile(r"^```(\w*)\s*$")
NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# Where a kdtrain command ends: a pipe, redirection, list operator or comment.
COMMAND_END = re.compile(r"\s(?:\|\|?|&&|;|[12]?>>?|#)")


class Block:
    def __init__(self, path, line, lang, lines, mark):
        self.path, self.line, self.lang, self.lines, self.mark = path, line, lang, lines, mark


def blocks_of(path):
    """The fenced blocks of a Markdown file: (line of the opening fence, language, body, mark)."""
    text = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(text):
        m = FENCE_OPEN.match(text[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(text) and text[j].rstrip() != "```":
            j += 1
        mark = text[start - 1].strip() if start > 0 else ""
        out.append(Block(path, start + 1, lang, text[start + 1 : j], mark))
        i = j + 1
    return out


def commands_of(block):
    """(line number, command) for each command in a shell block; comments and blank lines skipped."""
    cmds, pending, first = [], "", None
    for k, raw in enumerate(block.lines):
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if first is None:
            first = block.line + 1 + k
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        cmds.append((first, pending + line))
        pending, first = "", None
    if pending:
        cmds.append((first, pending))
    return cmds


def with_flags(command, flags):
    """Appends flags to every kdtrain invocation in a command (see the docstring)."""
    out, pos = [], 0
    for m in re.finditer(r"(?:^|(?<=[\s;&|(]))(?:\S*/)?kdtrain(?=\s|$)", command):
        if m.start() < pos:
            continue
        end = COMMAND_END.search(command, m.end())
        stop = end.start() if end else len(command)
        out.append(command[pos:stop].rstrip() + " " + flags)
        pos = stop
    out.append(command[pos:])
    return "".join(out)


def line_pattern(line):
    """A regex for one quoted output line: whitespace collapsed, any number for a number."""
    parts, pos = [], 0
    norm = " ".join(line.split())
    for m in NUMBER.finditer(norm):
        parts.append(re.escape(norm[pos : m.start()]))
        parts.append(NUMBER.pattern)
        pos = m.end()
    parts.append(re.escape(norm[pos:]))
    return re.compile("^" + "".join(parts) + "$")


def check_output(quoted, output):
    """None when every quoted line occurs in order in the output, else the first line that does not."""
    got = [" ".join(l.split()) for l in output.split("\n")]
    k = 0
    for q in quoted:
        if not q.strip() or q.strip() == "...":
            continue
        pat = line_pattern(q)
        while k < len(got) and not pat.match(got[k]):
            k += 1
        if k == len(got):
            return q
        k += 1
    return None


def main():
    bindir = os.path.abspath(os.environ.get("KD_BINARY_DIR", os.path.join(ROOT, "build")))
    if not os.path.exists(os.path.join(bindir, "kdtrain")):
        print(f"readme_test: {bindir}/kdtrain not found; build it first (KD_BINARY_DIR names the build)")
        return 1
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    docs = os.path.join(ROOT, "docs")
    files = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    failures, ran, skipped = [], 0, []
    t0 = time.time()
    for path in files:
        rel = os.path.relpath(path, ROOT)
        last_output = None  # what the last run shell block printed
        for b in blocks_of(path):
            where = f"{rel}:{b.line}"
            if b.lang == "text" and OUTPUT_OF.match(b.mark):
                if last_output is None:
                    failures.append(f"{where}: an output block follows no block that was run")
                    continue
                missing = check_output(b.lines, last_output)
                if missing is not None:
                    failures.append(f"{where}: quoted output line not found (in order) in the output:\n"
                                    f"    {missing.strip()}\n  output was:\n" + last_output[-3000:])
                continue
            if b.lang not in ("sh", "bash"):
                continue
            last_output = None
            if b.mark.startswith("<!--") and "not run in CI" in b.mark:
                m = NOT_RUN.match(b.mark)
                if not m or not m.group("reason"):
                    failures.append(f"{where}: '{b.mark}' gives no reason; write <!-- not run in CI: REASON -->")
                else:
                    skipped.append(f"{where} ({m.group('reason')})")
                continue
            flags = ""
            if b.mark.startswith("<!--") and "run in CI with" in b.mark:
                m = RUN_WITH.match(b.mark)
                if not m or not m.group("flags"):
                    failures.append(f"{where}: malformed mark '{b.mark}'; write <!-- run in CI with: FLAGS -->")
                    continue
                flags = m.group("flags")
            cmds = commands_of(b)
            bad_out = [d for _, c in cmds for d in re.findall(r"--out[ =](\S+)", c)
                       if not os.path.normpath(d).startswith("runs" + os.sep)]
            if bad_out:
                failures.append(f"{where}: --out {bad_out[0]} is not under runs/ (git-ignored)")
                continue
            for _, c in cmds:
                for d in re.findall(r"--out[ =](\S+)", c):
                    shutil.rmtree(os.path.join(ROOT, d), ignore_errors=True)
            output = []
            for line, c in cmds:
                cmd = with_flags(c, flags) if flags else c
                start = time.time()
                p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                ran += 1
                print(f"  {rel}:{line}: {cmd}  [{time.time() - start:.1f} s, exit {p.returncode}]", flush=True)
                output.append(p.stdout)
                if p.returncode != 0:
                    failures.append(f"{rel}:{line}: exit {p.returncode}: {cmd}\n" + p.stdout[-3000:])
                    break
            else:
                last_output = "".join(output)
    print(f"readme_test: {ran} commands run, {len(skipped)} blocks marked not run, "
          f"{time.time() - t0:.0f} s")
    for s in skipped:
        print(f"  not run: {s}")
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
