"""e2e: loader semantics on tests/e2e/pipelines/semtest (docs/loader.md):

- merge rules: every permutation of a session's events (end before start,
  repeats, split over batches or inside one batch) gives the same row;
- retention: a session older than 365 days before the pinned now is deleted;
- references/unique: rows breaking them are rejected one by one (DLQ entry,
  ledger `rejected`, batch.loaded `rejected`), the rest of the batch loads;
- soft delete (op delete), reactivation by a write, hard delete;
- an export CSV is written atomically after a load of its `after` dataset.

Batches are written straight to the streams (a small protobuf encoder
below), as ingest and the api do."""
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "semtest")

# ---- freshet.Batch encoder (proto/freshet.proto) ----------------------------------

TYPES = {"text": 0, "int": 1, "bigint": 2, "float": 3, "numeric": 4, "bool": 5, "timestamptz": 6, "date": 7,
         "json": 8}
OPS = {"upsert": 0, "delete": 1, "hard_delete": 2, "replaced": 3}
_seq = [0]


def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    key = _varint((num << 3) | wire)
    if wire == 0:
        return key + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return key + _varint(len(data)) + data


def encode_batch(batch_id, dataset, cols, rows, op="upsert"):
    """cols: [(name, type)], rows: list of tuples (None = null)."""
    msg = _field(1, 2, batch_id) + _field(2, 2, dataset) + _field(3, 2, "test") + _field(4, 0, 1)
    msg += _field(5, 0, int(time.time() * 1e6)) + _field(6, 0, OPS[op]) + _field(7, 0, len(rows))
    for ci, (name, typ) in enumerate(cols):
        col = _field(1, 2, name) + _field(2, 0, TYPES[typ])
        nulls = bytearray((len(rows) + 7) // 8)
        for ri, row in enumerate(rows):
            v = row[ci]
            col += _field(3, 2, "" if v is None else str(v))
            if v is None:
                nulls[ri // 8] |= 1 << (ri % 8)
        if any(nulls):
            col += _field(4, 2, bytes(nulls))
        msg += _field(8, 2, col)
    return msg


def send(r, dataset, cols, rows, op="upsert"):
    """XADDs one batch to fr:stream:{dataset}; returns its id."""
    _seq[0] += 1
    bid = "t%013d%06d" % (int(time.time() * 1000), _seq[0])
    r.xadd("fr:stream:{%s}" % dataset, {"batch": encode_batch(bid, dataset, cols, rows, op), "id": bid,
                                     "rows": str(len(rows))})
    return bid


def loaded(stack, bid):
    return stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE batch_id = %s", (bid,)) == 1


def wait_loaded(stack, bid, what=None):
    wait_until(lambda: loaded(stack, bid), 30, what=what or ("batch %s loaded" % bid))


# ---- the test ---------------------------------------------------------------------

SCOLS = [("session_id", "text"), ("player_id", "text"), ("country", "text"), ("start_ts", "timestamptz"),
         ("end_ts", "timestamptz")]


def session_row(stack, sid):
    rows = stack.pg.query("SELECT player_id, country, start_ts::text, end_ts::text FROM semtest.sessions "
                          "WHERE session_id = %s", (sid,))
    return rows[0] if rows else None


def merge_rules(t, stack, r):
    # events of one session: two starts, two ends (one end earlier than the start)
    ev = [
        ("S", "p1", "DE", "2024-05-01T10:00:00Z", None),
        ("S", "p1", None, None, "2024-05-01T11:00:00Z"),
        ("S", "p1", "DE", "2024-05-01T09:30:00Z", None),
        ("S", "p1", None, None, "2024-05-01T09:00:00Z"),
    ]
    want = ("p1", "DE", "2024-05-01 09:30:00+00", "2024-05-01 11:00:00+00")
    results = set()
    # each permutation as separate batches, into its own session id
    for n, perm in enumerate(itertools.permutations(ev)):
        sid = "sep%02d" % n
        last = None
        for e in perm:
            last = send(r, "semtest.sessions", SCOLS, [(sid,) + e[1:]])
        wait_loaded(stack, last)
        results.add(session_row(stack, sid))
    t.eq(results, {want}, "every order of separate batches gives the same session")
    # each permutation inside one batch
    results = set()
    for n, perm in enumerate(itertools.permutations(ev)):
        sid = "one%02d" % n
        bid = send(r, "semtest.sessions", SCOLS, [(sid,) + e[1:] for e in perm])
        wait_loaded(stack, bid)
        results.add(session_row(stack, sid))
    t.eq(results, {want}, "every order inside one batch gives the same session")
    # an exact repeat changes nothing (and a row's xmin shows no rewrite is needed)
    before = session_row(stack, "one00")
    bid = send(r, "semtest.sessions", SCOLS, [("one00",) + ev[0][1:], ("one00",) + ev[1][1:]])
    wait_loaded(stack, bid)
    t.eq(session_row(stack, "one00"), before, "exact repeat changes nothing")
    # coalesce: the newest non-null note wins, null never overwrites
    ncols = [("session_id", "text"), ("note", "text")]
    wait_loaded(stack, send(r, "semtest.sessions", ncols, [("one00", "a"), ("one00", "b"), ("one00", None)]))
    t.eq(stack.pg.scalar("SELECT note FROM semtest.sessions WHERE session_id = 'one00'"), "b", "coalesce in batch")
    wait_loaded(stack, send(r, "semtest.sessions", ncols, [("one00", None)]))
    t.eq(stack.pg.scalar("SELECT note FROM semtest.sessions WHERE session_id = 'one00'"), "b", "null keeps note")


def retention(t, stack, r):
    # pinned now 2024-06-01: older than 2023-06-02 goes
    bid = send(r, "semtest.sessions", SCOLS, [
        ("old", "p2", "FR", "2023-01-01T00:00:00Z", "2023-01-01T01:00:00Z"),
        ("fresh", "p2", "FR", "2024-05-30T00:00:00Z", None),
        ("mixed", "p2", "FR", "2022-01-01T00:00:00Z", "2024-05-01T00:00:00Z"),
    ])
    wait_loaded(stack, bid)
    t.eq(session_row(stack, "old"), None, "a session older than 365 days is dropped on load")
    t.check(session_row(stack, "fresh") is not None, "a recent session stays")
    t.check(session_row(stack, "mixed") is not None, "retention looks at the greatest column")
    # the daily run (here: at start) removes rows that were inserted behind the loader's back
    stack.pg.query("INSERT INTO semtest.sessions (session_id, start_ts) VALUES ('sneaky', '2020-01-01Z')")
    version = lambda: stack.pg.scalar("SELECT version FROM freshet.versions WHERE name = 'semtest.sessions'")  # noqa
    before = version()
    stack["loader"].stop()
    stack["loader"].start()
    wait_until(lambda: session_row(stack, "sneaky") is None, 30, what="daily retention at start")
    t.check(True, "daily retention deletes old rows")
    # the api's ETags follow it: the dataset's data version moved with the delete
    t.eq(version(), before + 1, "daily retention raises the dataset's data version")


DCOLS = [("id", "bigint"), ("department", "text")]
ECOLS = [("id", "bigint"), ("name", "text"), ("department_id", "bigint")]


def constraints(t, stack, r):
    p = stack.redis.client().pubsub()
    p.subscribe("fr:events")
    wait_loaded(stack, send(r, "semtest.departments", DCOLS, [(1, "Sales"), (2, "Ops"), (3, "HR")]))
    bid = send(r, "semtest.employees", ECOLS, [(10, "ann", 1), (11, "bob", 7), (12, "cy", None), (13, "di", 3)])
    wait_loaded(stack, bid)
    t.eq(stack.pg.query("SELECT id FROM semtest.employees ORDER BY id"), [(10,), (12,), (13,)],
         "rows with a missing reference are not inserted, the rest load")
    rej = stack.pg.scalar("SELECT rejected FROM freshet.batches WHERE batch_id = %s", (bid,))
    t.eq(rej, [{"row": 1, "field": "department_id", "value": "7", "kind": "reference",
                "reason": "department_id 7 does not exist in departments"}], "ledger rejected")
    dlq = [f for _, f in r.xrange("fr:dlq:{semtest.employees}") if f.get(b"batch") == bid.encode()]
    t.eq(len(dlq), 1, "one dead letter for the rejected row")
    if dlq:
        t.eq((dlq[0][b"kind"], dlq[0][b"row"], dlq[0][b"field"], dlq[0][b"reason"]),
             (b"row", b"1", b"department_id", b"department_id 7 does not exist in departments"), "dead letter")
    ev = None
    deadline = time.time() + 10
    while time.time() < deadline and ev is None:
        m = p.get_message(timeout=1)
        if m and m["type"] == "message":
            j = json.loads(m["data"])
            if j.get("type") == "batch.loaded" and j.get("batch") == bid:
                ev = j
    t.check(ev is not None and ev["rows"] == 4 and ev["loaded"] == 3 and len(ev["rejected"]) == 1
            and ev["rejected"][0]["row"] == 1 and ev["op"] == "upsert", "batch.loaded carries the rejects: %r" % ev)
    # unique: another key holding the name (table and inside the batch) is rejected; the same key is fine
    bid = send(r, "semtest.departments", DCOLS, [(4, "Sales"), (5, "Legal"), (6, "Legal"), (2, "Ops")])
    wait_loaded(stack, bid)
    rej = stack.pg.scalar("SELECT rejected FROM freshet.batches WHERE batch_id = %s", (bid,))
    t.eq([(x["row"], x["field"], x["kind"]) for x in rej], [(0, "department", "unique"), (2, "department", "unique")],
         "unique rejects: %r" % rej)
    t.eq(stack.pg.query("SELECT id FROM semtest.departments ORDER BY id"), [(1,), (2,), (3,), (5,)], "others load")

    # soft delete: op delete sets deleted_at; references to it are then rejected
    wait_loaded(stack, send(r, "semtest.departments", [("id", "bigint")], [(3,)], op="delete"))
    t.check(stack.pg.scalar("SELECT deleted_at IS NOT NULL FROM semtest.departments WHERE id = 3"),
            "soft delete sets deleted_at")
    bid = send(r, "semtest.employees", ECOLS, [(14, "ed", 3)])
    wait_loaded(stack, bid)
    t.eq(stack.pg.scalar("SELECT count(*) FROM semtest.employees WHERE id = 14"), 0,
         "a reference to a soft-deleted row is rejected")
    # a soft-deleted name is free again for another key; a write of the key reactivates it
    wait_loaded(stack, send(r, "semtest.departments", DCOLS, [(3, "HR")]))
    t.eq(stack.pg.scalar("SELECT deleted_at FROM semtest.departments WHERE id = 3"), None, "write reactivates")
    # hard delete
    wait_loaded(stack, send(r, "semtest.departments", [("id", "bigint")], [(5,)], op="hard_delete"))
    t.eq(stack.pg.scalar("SELECT count(*) FROM semtest.departments WHERE id = 5"), 0, "hard delete removes the row")
    # model + cache follow (employees per department)
    rr = stack.redis.client()
    wait_until(lambda: rr.hget("dept_size:1", "employees") == b"1", 20, what="cache dept_size:1")
    t.check(True, "model cache follows loads")
    p.close()


def exports(t, stack, r):
    out = os.path.join(stack.data_dir, "output", "semtest")
    files = wait_until(lambda: [f for f in (os.listdir(out) if os.path.isdir(out) else []) if f.endswith(".csv")],
                       30, what="export written")
    t.eq(files, ["departments-20240601T000000Z.csv"], "export path with {ts} from the pinned now")
    path = os.path.join(out, files[0])
    want = "id,department,generated_at\n1,Sales,2024-06-01 00:00:00+00\n2,Ops,2024-06-01 00:00:00+00\n" \
           "3,HR,2024-06-01 00:00:00+00\n"
    wait_until(lambda: open(path).read() == want, 20, what="export content after the last load")
    t.eq(open(path).read(), want, "export CSV content")
    t.eq([f for f in os.listdir(out) if f.endswith(".tmp")], [], "no temporary file left")


def main(t):
    stack = t.stack = Stack(pipelines=PIPE, extra_env={"FRESHET_NOW": ""}).start("loader")
    r = stack.redis.client()
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM information_schema.tables "
                                       "WHERE table_schema = 'semtest'") >= 4, 30, what="migrations")
    merge_rules(t, stack, r)
    retention(t, stack, r)
    constraints(t, stack, r)
    exports(t, stack, r)
    t.eq(stack["loader"].stop(), 0, "loader exits 0")


if __name__ == "__main__":
    TestRun("e2e_loader_semantics").run(main)
