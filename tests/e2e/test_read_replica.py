#!/usr/bin/env python3
"""e2e: api reads on a PostgreSQL streaming replica (FRESHET_DATABASE_READ_URL).

A real hot standby (pg_basebackup -R) of the test primary on its own loopback
port, the ryw test pipeline (tests/e2e/pipelines/ryw: every write route and
every read shape over one dataset), an api with the replica and a second api
on the primary only. Checks:
1. every SQL read route (one, value, list, envelope, CSV, a streamed list of
   several cursor pages, a not-found from an exists check, a cache's
   PostgreSQL fallback) answers from the replica byte for byte as the
   primary-only api does, and ran on the replica (api_db_reads_total, the
   replica's pg_stat_activity);
2. read-your-writes, with the replica's WAL replay paused and the lag bound
   high enough that the replica stays in use: after each write route (push
   route, /v1/push, crud POST/PUT/PATCH/DELETE, bulk) its caller's next read
   shows the write, while another caller still reads the replica's older
   view (so the check can fail); and across api processes: a write through
   the api, then a read (one, list) through a second api on the same replica
   by the same caller shows it, while another caller through the second api
   reads the paused replica;
3. with a normal lag bound, a lagging replica is bypassed (every caller reads
   the primary); caught up, it is read again;
4. a SIGSTOPped replica costs no failed request (every shape).
Throughput of replica-backed reads is measured in bench/scale_bench.py, not here.
"""
import http.client
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Daemon, Replica, Stack, TestRun, free_port, wait_until  # noqa: E402

RYW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "ryw")

READS = ["/ryw/notes", "/ryw/notes?format=csv", "/ryw/notes-envelope", "/ryw/note/2", "/ryw/note/2?format=csv",
         "/ryw/note/2/body", "/ryw/note/99/body", "/ryw/note/99", "/ryw/count", "/ryw/cached/2", "/ryw/cached/3",
         "/ryw/big?n=5000", "/ryw/big?n=5000&format=csv"]


def call(port, method, path, body=None, source="127.0.0.1"):
    """(status, content type, body bytes) of one request from `source`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        hdrs = {}
        if body is not None:
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        c.close()


def jget(port, path, source):
    st, _, b = call(port, "GET", path, source=source)
    return st, (json.loads(b) if b and b[:1] in (b"{", b"[", b'"') else b.decode())


def counter(port, name, target=None):
    st, _, b = call(port, "GET", "/metrics")
    pat = r'^%s\{target="%s"\} (\d+)' % (name, target) if target else r"^%s (\d+)" % name
    m = re.search(pat, b.decode(), re.M)
    return int(m.group(1)) if m else 0


def same_answers(t, api, plain, paths, source, what):
    for p in paths:
        a, b = call(api, "GET", p, source=source), call(plain, "GET", p, source=source)
        t.check(a == b and a[0] in (200, 404), "%s: %s answers as the primary's (%r vs %r)"
                % (what, p, a[:2] + (a[2][:120],), b[:2] + (b[2][:120],)))


def main(t):
    # writes wait up to 30 s for their batch (201), however loaded the machine
    stack = t.stack = Stack(pipelines=RYW, extra_env={"FRESHET_API_WORKERS": "1", "FRESHET_API_WRITE_WAIT_MS": "30000"})
    rep = Replica(stack.base, stack.pg).start()
    rdb = stack.redis.client()
    api = stack.api_port
    # a high lag bound: the paused replica below stays in use, so only
    # read-your-writes keeps a writer from reading it
    stack["api"].env.update({"FRESHET_DATABASE_READ_URL": rep.url, "FRESHET_READ_MAX_LAG_MS": "600000",
                             "FRESHET_READ_WAIT_MS": "200"})
    stack.start("loader", "api")
    plain_port = free_port()
    env = dict(stack["api"].env)
    env.pop("FRESHET_DATABASE_READ_URL")
    env["FRESHET_API_ADDR"] = "127.0.0.1:%d" % plain_port
    plain = Daemon("api", env, stack.base)
    plain.log_path = os.path.join(stack.base, "api-plain.log")
    plain.start()
    wait_until(lambda: call(plain_port, "GET", "/healthz")[0] == 200, 20, what="the primary-only api")
    b_port = free_port()  # a second api on the same replica (no client affinity between the two)
    env = dict(stack["api"].env)
    env["FRESHET_API_ADDR"] = "127.0.0.1:%d" % b_port
    api_b = Daemon("api", env, stack.base)
    api_b.log_path = os.path.join(stack.base, "api-b.log")
    api_b.start()
    wait_until(lambda: call(b_port, "GET", "/healthz")[0] == 200, 20, what="the second api")

    st, _, b = call(api, "POST", "/ryw/notes", [{"id": i, "body": "note %d" % i} for i in range(1, 6)])
    t.eq(st, 201, "seed 5 notes (%r)" % (b,))
    wait_until(lambda: rep.scalar("SELECT to_regclass('ryw.notes') IS NOT NULL")
               and rep.scalar("SELECT count(*) FROM ryw.notes") == 5, 30, what="the notes replayed on the replica")
    wait_until(lambda: rdb.exists("note:2") and rdb.exists("note:3"), 30, what="the note cache filled")
    wait_until(lambda: rep.scalar("SELECT count(*) FROM ryw.note_view") == 5, 30, what="the model on the replica")
    rdb.delete("note:2", "note:3")  # their reads fall back to PostgreSQL

    # 1. every read route answers from the replica as from the primary
    src = "127.0.0.2"  # a caller without writes
    wait_until(lambda: call(api, "GET", "/ryw/count", source=src)[0] == 200
               and counter(api, "api_db_reads_total", "replica") > 0, 10, what="a read on the replica")
    r0, p0 = counter(api, "api_db_reads_total", "replica"), counter(api, "api_db_reads_total", "primary")
    same_answers(t, api, plain_port, READS, src, "caught up")
    r1, p1 = counter(api, "api_db_reads_total", "replica"), counter(api, "api_db_reads_total", "primary")
    t.check(r1 >= r0 + len(READS), "every read ran on the replica (%d -> %d)" % (r0, r1))
    t.eq(p1, p0, "none on the primary")
    t.check(counter(api, "api_read_replica_conns_in_use") >= 1, "api_read_replica_conns_in_use counts the replica")
    seen = rep.scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%ryw.notes%' "
                      "OR query LIKE '%generate_series%'")
    t.check(seen >= 1, "the replica's pg_stat_activity shows the routes' SQL (%r)" % (seen,))

    # 2. read-your-writes for every write route, replay paused
    rep.pause()
    by = "127.0.0.9"  # a bystander: reads the paused replica
    n_rep = rep.scalar("SELECT count(*) FROM ryw.notes")
    cases = [
        ("POST", "/ryw/notes", [{"id": 10, "body": "pushed"}], 201, "/ryw/note/10",
         lambda r: r == (200, {"id": 10, "body": "pushed"}), lambda r: r[0] == 404),
        ("POST", "/v1/push/ryw/notes", [{"id": 11, "body": "v1 pushed"}], 201, "/ryw/note/11/body",
         lambda r: r == (200, "v1 pushed"), lambda r: r[0] == 404),
        ("POST", "/ryw/crud", {"id": 12, "body": "created"}, 201, "/ryw/notes",
         lambda r: r[0] == 200 and {"id": 12, "body": "created"} in r[1],
         lambda r: r[0] == 200 and all(x["id"] != 12 for x in r[1])),
        ("PUT", "/ryw/crud/12", {"id": 12, "body": "put"}, 200, "/ryw/notes-envelope",
         lambda r: r[0] == 200 and {"id": 12, "body": "put"} in r[1]["items"],
         lambda r: r[0] == 200 and all(x["id"] != 12 for x in r[1]["items"])),
        ("PATCH", "/ryw/crud/12", {"body": "patched"}, 200, "/ryw/note/12?format=csv",
         lambda r: r[0] == 200 and "patched" in r[1], lambda r: r[0] == 404),
        ("DELETE", "/ryw/crud/1", None, 204, "/ryw/count",
         lambda r: r == (200, {"n": 5 + 3 - 1}), lambda r: r == (200, {"n": n_rep})),
        ("POST", "/ryw/crud/bulk", [{"id": 13, "body": "b13"}, {"id": 14, "body": "b14"}], 201,
         "/ryw/notes?format=csv", lambda r: r[0] == 200 and "13,b13" in r[1] and "14,b14" in r[1],
         lambda r: r[0] == 200 and "13,b13" not in r[1]),
    ]
    for k, (method, path, body, want, read, mine, theirs) in enumerate(cases):
        who = "127.0.0.%d" % (30 + k)
        st, _, b = call(api, method, path, body, source=who)
        t.eq(st, want, "%s %s (%r)" % (method, path, b[:200]))
        got = jget(api, read, who)
        t.check(mine(got), "read-your-writes: %s %s, then GET %s by the writer: %r" % (method, path, read, got))
        other = jget(api, read, by)
        t.check(theirs(other), "another caller reads the paused replica's view of %s: %r" % (read, other))
    # across api processes: written through one, read through the other
    cross = [
        ("POST", "/ryw/notes", [{"id": 20, "body": "via a"}], 201, "/ryw/note/20",
         lambda r: r == (200, {"id": 20, "body": "via a"}), lambda r: r[0] == 404),
        ("POST", "/ryw/crud", {"id": 21, "body": "via a too"}, 201, "/ryw/notes",
         lambda r: r[0] == 200 and {"id": 21, "body": "via a too"} in r[1],
         lambda r: r[0] == 200 and all(x["id"] != 21 for x in r[1])),
    ]
    for k, (method, path, body, want, read, mine, theirs) in enumerate(cross):
        who = "127.0.0.%d" % (50 + k)
        st, _, b = call(api, method, path, body, source=who)
        t.eq(st, want, "%s %s through api A (%r)" % (method, path, b[:200]))
        got = jget(b_port, read, who)
        t.check(mine(got), "read-your-writes across apis: %s %s through A, GET %s through B: %r"
                % (method, path, read, got))
        other = jget(b_port, read, by)
        t.check(theirs(other), "another caller through B reads the paused replica's view of %s: %r" % (read, other))
    t.eq(rep.scalar("SELECT count(*) FROM ryw.notes"), n_rep, "the paused replica lacks every write")

    # 3. with a normal lag bound the lagging replica is bypassed
    t.eq(stack["api"].stop(), 0, "api drains")
    stack["api"].env["FRESHET_READ_MAX_LAG_MS"] = "1000"
    stack.start("api")
    wait_until(lambda: call(api, "GET", "/ryw/count", source=src)[2] == call(plain_port, "GET", "/ryw/count")[2],
               10, what="the api on the primary while the replica lags")
    # every worker's probes have found the replica too far behind
    wait_until(lambda: counter(api, "api_read_replica_conns_in_use") == 0, 10,
               what="no replica connection in use on any worker")
    r0, p0 = counter(api, "api_db_reads_total", "replica"), counter(api, "api_db_reads_total", "primary")
    same_answers(t, api, plain_port, READS, src, "lagging replica bypassed")
    t.eq(counter(api, "api_db_reads_total", "replica"), r0, "no read on the lagging replica")
    t.check(counter(api, "api_db_reads_total", "primary") >= p0 + len(READS), "they ran on the primary")
    rep.resume()
    wait_until(lambda: rep.scalar("SELECT count(*) FROM ryw.notes WHERE deleted_at IS NULL") ==
               stack.pg.scalar("SELECT count(*) FROM ryw.notes WHERE deleted_at IS NULL"), 20, what="replica caught up")
    wait_until(lambda: call(api, "GET", "/ryw/count", source=src)[0] == 200
               and counter(api, "api_db_reads_total", "replica") > r0, 10, what="the caught-up replica read again")
    r0 = counter(api, "api_db_reads_total", "replica")
    same_answers(t, api, plain_port, READS, src, "caught up again")
    # (the cache routes may answer from the process cache the primary's reads filled)
    sql_reads = len([p for p in READS if "cached" not in p])
    t.check(counter(api, "api_db_reads_total", "replica") >= r0 + sql_reads, "caught-up replica read again")

    # 4. a stopped replica costs no failed request
    pids = rep.pids()
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        want = {p: call(plain_port, "GET", p, source=src) for p in READS}
        bad = []
        t0 = time.monotonic()
        for i in range(3):
            for p in READS:
                got = call(api, "GET", p, source=src)
                if got != want[p]:
                    bad.append((i, p, got[0], got[2][:100]))
        t.eq(bad, [], "%d reads with the replica stopped (%.1f s)" % (3 * len(READS), time.monotonic() - t0))
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    t.check(counter(api, "api_db_read_fallbacks_total") >= 1, "fallback counted")

    t.eq(plain.stop(), 0, "primary-only api drains")
    t.eq(api_b.stop(), 0, "the second api drains")
    t.eq(stack["api"].stop(), 0, "api drains with the replica pool")


if __name__ == "__main__":
    TestRun("test_read_replica").run(main)
