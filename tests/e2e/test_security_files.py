"""e2e: what ingest does with inbox entries that are not plain files, and with
working directories swapped for links (docs/security.md), on
tests/e2e/pipelines/sectest (one dataset, max_file_bytes 4096):

- a symbolic link to a secret file is rejected ("symbolic link"); the
  secret reaches neither the landing zone, nor the table, nor the dead
  letters;
- a FIFO is rejected ("FIFO") without blocking the source; a directory
  ("directory") and a hard link ("hard links") are rejected too;
- a sparse file larger than max_file_bytes is rejected with a reason naming
  its size and the limit, and leaves no landing copy;
- a good file still loads, and its landing copy is not world-readable;
- done/ replaced by a symbolic link: ingest refuses to start, naming the
  path, and moves nothing into the link's target.
"""
import glob
import os
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "sectest")
SECRET = "s3cr3t-token-from-a-0600-file"


def main(t):
    stack = t.stack = Stack(pipelines=PIPE).start("loader", "ingest")
    r = stack.redis.client()
    inbox = stack.inbound("sectest", "items")
    landing = os.path.join(stack.data_dir, "landing", "sectest", "items_drop")
    outside = os.path.join(stack.base, "outside")
    os.makedirs(outside)

    def finished(name):
        for sub in ("done", "rejected"):
            if os.path.lexists(os.path.join(inbox, sub, name)):
                return sub
        return None

    def reason(name):
        p = os.path.join(inbox, "rejected", name + ".reason.txt")
        with open(p) as f:
            return f.read()

    def landed(name):
        return glob.glob(os.path.join(landing, "*", "*-" + name))

    # ---- a symbolic link to a secret -------------------------------------
    secret = os.path.join(outside, "secret.csv")
    with open(secret, "w") as f:
        f.write("id,name\n1,%s\n" % SECRET)
    os.chmod(secret, 0o600)
    os.symlink(secret, os.path.join(inbox, "leak.csv"))
    wait_until(lambda: finished("leak.csv"), 30, what="leak.csv finished")
    t.eq(finished("leak.csv"), "rejected", "a symbolic link goes to rejected/")
    t.check("symbolic link" in reason("leak.csv"), "reason names the type: %r" % reason("leak.csv"))
    t.check(os.path.islink(os.path.join(inbox, "rejected", "leak.csv")), "the link itself is moved, not its target")
    t.check(os.path.exists(secret), "the target is untouched")

    # ---- a FIFO, a directory, a hard link ----------------------------------
    os.mkfifo(os.path.join(inbox, "pipe.csv"))
    os.mkdir(os.path.join(inbox, "folder.csv"))
    hard_src = os.path.join(outside, "other.csv")
    with open(hard_src, "w") as f:
        f.write("id,name\n2,%s\n" % SECRET)
    os.link(hard_src, os.path.join(inbox, "hard.csv"))
    for name, word in (("pipe.csv", "FIFO"), ("folder.csv", "directory"), ("hard.csv", "hard links")):
        wait_until(lambda: finished(name), 30, what="%s finished" % name)
        t.eq(finished(name), "rejected", "%s goes to rejected/" % name)
        t.check(word in reason(name), "%s: reason names %r: %r" % (name, word, reason(name)))

    # ---- a sparse file over max_file_bytes ---------------------------------
    big = os.path.join(outside, "big.csv")
    with open(big, "wb") as f:
        f.write(b"id,name\n")
        f.truncate(2 << 30)  # 2 GiB, sparse
    os.rename(big, os.path.join(inbox, "big.csv"))
    wait_until(lambda: finished("big.csv"), 30, what="big.csv finished")
    t.eq(finished("big.csv"), "rejected", "a file over max_file_bytes goes to rejected/")
    why = reason("big.csv")
    t.check("2147483648" in why and "4096" in why, "reason names the size and the limit: %r" % why)
    t.eq(landed("big.csv"), [], "no landing copy of the big file")

    # ---- a good file still loads; its landing copy is private --------------
    stack.drop("sectest", "items", "good.csv", "id,name\n10,ten\n11,eleven\n")
    wait_until(lambda: finished("good.csv"), 30, what="good.csv finished")
    t.eq(finished("good.csv"), "done", "a regular file is processed")
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM sectest.items") == 2, 30, what="rows loaded")
    copies = landed("good.csv")
    t.eq(len(copies), 1, "one landing copy of good.csv")
    if copies:
        mode = stat.S_IMODE(os.stat(copies[0]).st_mode)
        t.eq(mode & 0o007, 0, "landing copy is not world-readable (mode %o)" % mode)

    # ---- the secret went nowhere -------------------------------------------
    t.eq(stack.pg.scalar("SELECT count(*) FROM sectest.items WHERE name LIKE %s", ("%" + SECRET + "%",)), 0,
         "no secret row in the table")
    leaked = []
    for p in glob.glob(os.path.join(stack.data_dir, "landing", "**", "*"), recursive=True):
        if os.path.isfile(p):
            with open(p, "rb") as f:
                if SECRET.encode() in f.read():
                    leaked.append(p)
    t.eq(leaked, [], "no landing file holds the secret")
    dlq = [f for _, f in r.xrange("fr:dlq:{sectest.items}") if SECRET.encode() in b"".join(f.values())]
    t.eq(dlq, [], "no dead letter holds the secret")

    # ---- done/ swapped for a symbolic link ----------------------------------
    t.eq(stack["ingest"].stop(), 0, "ingest drains and exits 0")
    target = os.path.join(stack.base, "elsewhere")
    os.makedirs(target)
    done = os.path.join(inbox, "done")
    os.rename(done, done + ".real")
    os.symlink(target, done)
    stack.drop("sectest", "items", "moved.csv", "id,name\n20,twenty\n")
    stack["ingest"].start()
    try:
        rc = stack["ingest"].wait_exit(30)
    except Exception:
        rc = None
    t.check(rc not in (None, 0), "ingest refuses to start with done/ a symbolic link (exit %r)" % rc)
    log = stack["ingest"].log()
    t.check(done in log and "symbolic link" in log, "the error names the path and says why")
    t.eq(os.listdir(target), [], "nothing was moved into the link's target")
    t.check(os.path.exists(os.path.join(inbox, "moved.csv")), "the dropped file is left in the inbox")
    stack["ingest"].kill()


TestRun("security_files").run(main)
