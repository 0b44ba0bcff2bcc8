"""e2e: rows at fault in a batch (docs/loader.md "Rows at fault", docs/security.md)
on tests/e2e/pipelines/isolate.

- a file of 5,000 rows with one key too large to index (3,000 bytes): 4,999
  rows load, the one is dead-lettered by ingest with its line and a reason
  naming the column and the 2000-byte limit (it used to fail the whole batch
  five times and dead-letter all 5,000 rows);
- a bulk write with such a row: 422 naming the row and field (nothing
  published), and with ?partial=1 201 with the other 999 rows loaded and a
  per-row reject;
- a batch written straight to the stream (as a producer that skips
  validation would) with two such keys and a unique conflict: the loader
  sets the three rows aside (split and retry down to single rows, in one
  transaction), loads the 4,997 others once, records the batch once in the
  ledger with the three in `rejected`, dead-letters each once with its
  reason; a replay of the batch is a duplicate."""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, TestRun, wait_until  # noqa: E402
from test_loader_semantics import encode_batch, send, wait_loaded  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "isolate")
TCOLS = [("name", "text"), ("label", "text"), ("n", "bigint")]


def huge(n=3000):
    """Random text that does not compress (PostgreSQL compresses index entries)."""
    return base64.b64encode(os.urandom(n))[:n].decode()


def dlq(r, stream, **match):
    out = []
    for _, f in r.xrange(stream):
        f = {k.decode(): v.decode(errors="replace") for k, v in f.items()}
        if all(f.get(k) == v for k, v in match.items()):
            out.append(f)
    return out


def main(t):
    stack = t.stack = Stack(pipelines=PIPE).start()
    r = stack.redis.client()
    count = lambda table: stack.pg.scalar("SELECT count(*) FROM %s" % table)  # noqa: E731

    # 1. a file: the oversized key is rejected at validation, the rest loads
    big = huge()
    lines = ["name,label,n"] + ["f%05d,fl%05d,%d" % (i, i, i) for i in range(5000)]
    lines[1 + 1234] = "%s,fl01234,1234" % big
    stack.drop("isolate", "tags", "five-thousand.csv", "\n".join(lines) + "\n")
    wait_until(lambda: count("isolate.tags") == 4999 and os.listdir(
        os.path.join(stack.data_dir, "inbound", "isolate", "tags", "done")), 60, what="4,999 rows of the file")
    wait_until(lambda: dlq(r, "fr:dlq:{isolate.tags}"), 20, what="the dead letter")
    got = dlq(r, "fr:dlq:{isolate.tags}")
    t.eq(len(got), 1, "one dead letter for the file")
    t.check(got and got[0].get("line") == "1236" and "name" in got[0].get("reason", "") and
            "2000 bytes" in got[0].get("reason", ""), "its line and a reason naming the column and limit: %r" %
            ({k: v[:120] for k, v in got[0].items()} if got else None))
    t.eq(count("isolate.tags"), 4999, "4,999 rows loaded")
    t.eq(stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE dataset = 'isolate.tags'"), 1,
         "one batch in the ledger")

    # 2. a bulk write: 422 naming the row, or with ?partial=1 the others load
    rows = [{"name": "w%04d" % i, "label": "wl%04d" % i, "n": i} for i in range(1000)]
    rows[500]["name"] = huge()
    st, body = stack.request("POST", "/v1/push/isolate/tags", rows)
    det = body.get("detail") if isinstance(body, dict) else None
    t.check(st == 422 and isinstance(det, list) and det and det[0].get("loc") == ["body", 500, "name"] and
            "2000 bytes" in det[0].get("msg", ""), "bulk write with an oversized key: 422 naming row 500 and "
            "the field (%r %r)" % (st, str(body)[:300]))
    t.eq(count("isolate.tags"), 4999, "... and nothing published")
    st, body = stack.request("POST", "/v1/push/isolate/tags?partial=1", rows)
    rej = body.get("rejected") if isinstance(body, dict) else None
    t.check(st == 201 and body.get("inserted") == 999 and rej and rej[0].get("row") == 500 and
            "2000 bytes" in rej[0].get("reason", ""), "?partial=1: 201, 999 inserted, row 500 rejected (%r %r)" %
            (st, str(body)[:300]))
    wait_until(lambda: count("isolate.tags") == 5998, 20, what="the 999 rows of the write")

    # 3. straight to the stream: the loader isolates the rows at fault
    base = count("isolate.tags")
    brows = [("s%05d" % i, "sl%05d" % i, i) for i in range(5000)]
    brows[17] = (huge(), "sl00017", 17)
    brows[4321] = (huge(), "sl04321", 4321)
    brows[2500] = ("s02500", "fl00007", 2500)  # label held by file row f00007: a unique reject
    bid = send(r, "isolate.tags", TCOLS, brows)
    wait_loaded(stack, bid)
    t.eq(count("isolate.tags") - base, 4997, "4,997 rows of the batch loaded")
    t.eq(stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE batch_id = %s", (bid,)), 1,
         "the batch is in the ledger once")
    led = stack.pg.scalar("SELECT rejected::text FROM freshet.batches WHERE batch_id = %s", (bid,))
    led = json.loads(led) if led else []
    t.eq([(x["row"], x["kind"]) for x in led], [(17, "load"), (2500, "unique"), (4321, "load")],
         "the ledger's rejected lists the three rows in order")
    t.check(all("index row" in x["reason"] for x in led if x["kind"] == "load"),
            "the set-aside rows carry the server's reason: %r" % [x["reason"][:100] for x in led])
    got = dlq(r, "fr:dlq:{isolate.tags}", batch=bid)
    t.eq(sorted(int(f["row"]) for f in got), [17, 2500, 4321], "one dead letter per row at fault, once each")
    t.check(all(f.get("kind") == "row" and f.get("reason") for f in got), "dead letters are row entries with "
            "a reason")
    t.eq(len(dlq(r, "fr:dlq:{isolate.tags}", kind="batch")), 0, "no batch is dead-lettered")
    t.eq(stack.pg.scalar("SELECT n FROM isolate.tags WHERE name = 's04999'"), 4999, "the last row is in")
    # a replay of the same batch id is a duplicate: nothing changes
    r.xadd("fr:stream:{isolate.tags}", {"batch": encode_batch(bid, "isolate.tags", TCOLS, brows), "id": bid,
                                      "rows": str(len(brows))})
    wait_until(lambda: r.xpending("fr:stream:{isolate.tags}", "loader")["pending"] == 0 and
               not r.xinfo_groups("fr:stream:{isolate.tags}")[0].get("lag"), 20, what="replay consumed")
    t.eq(count("isolate.tags") - base, 4997, "a replay loads nothing more")
    t.eq(len(dlq(r, "fr:dlq:{isolate.tags}", batch=bid)), 3, "... and dead-letters nothing more")

    t.eq(stack["loader"].stop(), 0, "loader exits 0")


if __name__ == "__main__":
    TestRun("e2e_isolation").run(main)
