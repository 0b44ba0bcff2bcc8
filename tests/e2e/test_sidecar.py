"""e2e: the landing copy's .sha256 sidecar verifies with GNU `sha256sum -c`
(services/ingest/filesrc.c, docs/security.md), also for a file name holding a
newline and a backslash: such a name is written escaped on a line starting
with a backslash, as sha256sum writes it (it was written raw, and a newline
in the name broke the check)."""
import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "isolate")


def main(t):
    stack = t.stack = Stack(pipelines=PIPE).start("loader", "ingest")
    names = ["plain.csv", "new\nline\\back.csv", "cr\rname.csv"]
    for i, n in enumerate(names):
        stack.drop("isolate", "tags", n, "name,label,n\nk%d,l%d,%d\n" % (i, i, i))
    land = os.path.join(stack.data_dir, "landing", "isolate", "tags_drop")
    wait_until(lambda: len(glob.glob(os.path.join(land, "*", "*.sha256"))) == len(names), 30,
               what="three sidecars")
    sides = sorted(glob.glob(os.path.join(land, "*", "*.sha256")))
    for side in sides:
        text = open(side, "rb").read()
        special = any(c in os.path.basename(side) for c in "\n\\\r")
        t.eq(text.count(b"\n"), 1, "%r: one line" % os.path.basename(side))
        t.eq(text.startswith(b"\\"), special, "%r: escaped iff the name needs it (%r)" % (os.path.basename(side),
                                                                                         text))
        p = subprocess.run(["sha256sum", "-c", os.path.basename(side)], cwd=os.path.dirname(side),
                           capture_output=True)
        t.check(p.returncode == 0 and b": OK" in p.stdout, "sha256sum -c %r: %r %r" % (
            os.path.basename(side), p.stdout, p.stderr))
    # the check fails on a changed copy: the sidecar names the right file
    odd = [s for s in sides if "\\" in os.path.basename(s)][0]
    with open(odd[:-len(".sha256")], "ab") as f:
        f.write(b"x")
    p = subprocess.run(["sha256sum", "-c", os.path.basename(odd)], cwd=os.path.dirname(odd), capture_output=True)
    t.check(p.returncode != 0 and b"FAILED" in p.stdout, "a changed copy fails the check (%r)" % p.stdout)
    t.eq(stack["ingest"].stop(), 0, "ingest exits 0")


if __name__ == "__main__":
    TestRun("e2e_sidecar").run(main)
