"""e2e: Avro backup and restore (freshet-loader backup/restore, common/backup)
on tests/e2e/pipelines/semtest:

- backup -> truncate -> restore gives the identical table: every column type,
  nulls vs empty strings, 64-bit ids at the limits, timestamps to the
  microsecond (before 1970 too), floats exactly, numerics of any precision;
- a corrupt (truncated or damaged) file and a file of a mismatched schema are
  errors naming the problem, and the table is unchanged;
- a restore refreshes the models fed by the dataset, and their caches;
- concurrent POST /admin/backup get distinct files, each restorable;
- a file whose data the table refuses (a duplicate key) is a 422 naming the
  record (not the server's text) and changes nothing, through the admin route
  and the command."""
import concurrent.futures
import http.client
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Stack, TestRun, tmpdir, wait_until  # noqa: E402
from test_loader_semantics import PIPE, send, wait_loaded  # noqa: E402

ACOLS = [("id", "bigint"), ("t", "text"), ("i", "int"), ("f", "float"), ("n", "numeric"), ("b", "bool"),
         ("ts", "timestamptz"), ("d", "date"), ("j", "json")]
ROWS = [
    (9223372036854775807, "max id", 2147483647, 0.1, "12345678901234567890.000000000001", "true",
     "2024-01-02T03:04:05.123456Z", "2024-02-29", '{"a": [1, 2.50], "b": null}'),
    (-9223372036854775808, "tab\there\nnew line \\ back\\slash \u00e9\u6f22", -2147483648, -1e308, "-0.5", "false",
     "1969-12-31T23:59:59.999999Z", "1900-01-01", "[]"),
    (9007199254740993, "", 0, 2.2250738585072014e-308, "0", "true", "2000-01-01T00:00:00Z", "1970-01-01", '"s"'),
    (1, None, None, None, None, None, None, None, None),
    (2, "x", 7, 3.141592653589793, "1e-20", None, "2262-04-11T23:47:16.854775Z", "9999-12-31", "1"),
]


def snapshot(stack, table="semtest.alltypes"):
    cols = stack.pg.query("SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || "
                          "table_name = %s ORDER BY ordinal_position", (table,))
    sel = ", ".join('"%s"::text' % c[0] for c in cols)
    return stack.pg.query("SELECT %s FROM %s ORDER BY 1" % (sel, table))


def loader_cmd(stack, *args, env=None):
    p = subprocess.run([os.path.join(BIN, "freshet-loader")] + list(args), env=env or stack.env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return p.returncode, p.stderr.decode(errors="replace")


def main(t):
    stack = t.stack = Stack(pipelines=PIPE).start("loader")
    r = stack.redis.client()
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM information_schema.tables "
                                       "WHERE table_schema = 'semtest'") >= 4, 30, what="migrations")
    wait_loaded(stack, send(r, "semtest.alltypes", ACOLS, ROWS))
    # float edge values the batch text cannot carry exactly are set in SQL
    stack.pg.query("INSERT INTO semtest.alltypes (id, f) VALUES (3, 'NaN'), (4, '-Infinity'), (5, '-0')")
    before = snapshot(stack)
    t.eq(len(before), 8, "rows loaded")
    work = tmpdir()
    path = os.path.join(work, "alltypes.avro")

    # 1. exact round trip
    rc, err = loader_cmd(stack, "backup", "--dataset", "semtest.alltypes", "--out", path)
    t.eq(rc, 0, "backup exits 0 (%s)" % err.strip())
    data = open(path, "rb").read()
    t.check(data[:4] == b"Obj\x01" and b"timestamp-micros" in data and b"freshet.schema_version" in data
            and b"freshet.dataset" in data, "an Avro container with the schema and freshet metadata")
    stack.pg.query("TRUNCATE semtest.alltypes")
    t.eq(snapshot(stack), [], "table emptied")
    rc, err = loader_cmd(stack, "restore", "--dataset", "semtest.alltypes", "--in", path)
    t.eq(rc, 0, "restore exits 0 (%s)" % err.strip())
    t.eq(snapshot(stack), before, "restore gives back every value exactly")
    # restore over a changed table replaces it (rows added since are gone)
    stack.pg.query("INSERT INTO semtest.alltypes (id, t) VALUES (42, 'extra')")
    stack.pg.query("UPDATE semtest.alltypes SET t = 'changed' WHERE id = 1")
    rc, err = loader_cmd(stack, "restore", "--dataset", "semtest.alltypes", "--in", path)
    t.eq((rc, snapshot(stack)), (0, before), "restore replaces the table")

    # 2. corrupt files change nothing
    stack.pg.query("UPDATE semtest.alltypes SET t = 'live' WHERE id = 1")
    live = snapshot(stack)
    cases = {
        "truncated": data[:len(data) - 7],
        "cut in the header": data[:40],
        "damaged block": data[:len(data) - 40] + bytes(b ^ 0xFF for b in data[len(data) - 40:len(data) - 30]) +
        data[len(data) - 30:],
        "not avro": b"id,name\n1,x\n",
        "empty": b"",
    }
    for what, blob in cases.items():
        bad = os.path.join(work, "bad.avro")
        with open(bad, "wb") as f:
            f.write(blob)
        rc, err = loader_cmd(stack, "restore", "--dataset", "semtest.alltypes", "--in", bad)
        t.check(rc != 0 and ("corrupt" in err or "not an Avro" in err or "Avro" in err),
                "%s file is an error (%d: %s)" % (what, rc, err.strip()[-200:]))
        t.eq(snapshot(stack), live, "%s file leaves the table unchanged" % what)

    # 3. mismatched schema: a file of another dataset, and one whose field type differs
    dpath = os.path.join(work, "departments.avro")
    wait_loaded(stack, send(r, "semtest.departments", [("id", "bigint"), ("department", "text")], [(1, "Sales")]))
    rc, err = loader_cmd(stack, "backup", "--dataset", "semtest.departments", "--out", dpath)
    t.eq(rc, 0, "backup of departments (%s)" % err.strip())
    rc, err = loader_cmd(stack, "restore", "--dataset", "semtest.alltypes", "--in", dpath)
    t.check(rc != 0 and "semtest.departments" in err, "a file of another dataset is refused: %s" % err.strip())
    t.eq(snapshot(stack), live, "mismatched dataset leaves the table unchanged")
    alt = os.path.join(work, "semtest")
    shutil.copytree(PIPE, alt)
    y = open(os.path.join(alt, "pipeline.yaml")).read().replace("{name: i, type: int}", "{name: i, type: bigint}")
    open(os.path.join(alt, "pipeline.yaml"), "w").write(y)
    mpath = os.path.join(work, "mismatch.avro")
    rc, err = loader_cmd(stack, "backup", "--dataset", "semtest.alltypes", "--out", mpath,
                         env=dict(stack.env, FRESHET_PIPELINES=alt))
    t.eq(rc, 0, "backup with a changed column type (%s)" % err.strip())
    rc, err = loader_cmd(stack, "restore", "--dataset", "semtest.alltypes", "--in", mpath)
    t.check(rc != 0 and "field 'i'" in err, "a field type mismatch names the field: %s" % err.strip())
    t.eq(snapshot(stack), live, "mismatched schema leaves the table unchanged")

    # 4. a restore refreshes the models fed by the dataset, and their caches
    ecols = [("id", "bigint"), ("name", "text"), ("department_id", "bigint")]
    wait_loaded(stack, send(r, "semtest.employees", ecols, [(10, "ann", 1)]))
    wait_until(lambda: r.hget("dept_size:1", "employees") == b"1", 20, what="cache dept_size:1 = 1")
    epath = os.path.join(work, "employees.avro")
    rc, err = loader_cmd(stack, "backup", "--dataset", "semtest.employees", "--out", epath)
    t.eq(rc, 0, "backup of employees (%s)" % err.strip())
    wait_loaded(stack, send(r, "semtest.employees", ecols, [(11, "bob", 1), (12, "cy", 1)]))
    wait_until(lambda: r.hget("dept_size:1", "employees") == b"3", 20, what="cache dept_size:1 = 3")
    rc, err = loader_cmd(stack, "restore", "--dataset", "semtest.employees", "--in", epath)
    t.eq(rc, 0, "restore of employees (%s)" % err.strip())
    wait_until(lambda: r.hget("dept_size:1", "employees") == b"1", 20, what="cache back to 1 after the restore")
    t.eq(stack.pg.scalar("SELECT employees FROM semtest.dept_sizes WHERE department_id = 1"), 1, "model refreshed")

    # 5. admin routes: two backups in the same second get two files, both valid
    #    (they shared one name before, and the second replaced the first)
    stack["api"].start()
    wait_until(lambda: stack.get("/healthz")[0] == 200, 20, what="api /healthz")
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        answers = list(ex.map(lambda _: post(stack, "/admin/backup/semtest.alltypes"), range(4)))
    t.eq([a[0] for a in answers], [201] * 4, "4 concurrent POST /admin/backup -> 201 (%r)" % answers)
    names = [json.loads(a[1]).get("file", "") for a in answers if a[0] == 201]
    t.eq(len(set(names)), 4, "4 distinct file names (%r)" % names)
    bdir = os.path.join(stack.data_dir, "backups")
    t.eq(sorted(n for n in os.listdir(bdir) if not n.startswith(".")), sorted(names),
         "4 files under backups/, no temp file left (%r)" % os.listdir(bdir))
    for n in names:
        stack.pg.query("DELETE FROM semtest.alltypes WHERE id = 1")
        st, body = post(stack, "/admin/restore/semtest.alltypes", open(os.path.join(bdir, n), "rb").read())
        t.eq((st, snapshot(stack)), (200, live), "%s restores the table (%r)" % (n, body[:200]))

    # 6. data the table refuses (here a duplicate key) is a 422 naming the
    #    record, without the server's text (row data, constraint names), and
    #    changes nothing (it was a 503 with the raw PostgreSQL error)
    wait_loaded(stack, send(r, "semtest.departments", [("id", "bigint"), ("department", "text")], [(2, "Opsdept")]))
    deps = snapshot(stack, "semtest.departments")
    st, body = post(stack, "/admin/backup/semtest.departments")
    t.eq(st, 201, "backup of departments (%r)" % body[:200])
    good = open(os.path.join(bdir, json.loads(body)["file"]), "rb").read()
    # record 2's key 2 (zigzag 0x04) becomes 1 (0x02): two records with key 1
    rec2 = b"\x02\x04\x02\x0eOpsdept"
    t.eq(good.count(rec2), 1, "record 2 found in the file")
    dup = good.replace(rec2, b"\x02\x02\x02\x0eOpsdept")
    stack.pg.query("UPDATE semtest.departments SET department = 'Ops live' WHERE id = 2")
    live_deps = snapshot(stack, "semtest.departments")
    st, body = post(stack, "/admin/restore/semtest.departments", dup)
    detail = json.loads(body).get("detail", "") if st == 422 else body
    t.eq(st, 422, "a duplicate key -> 422 (%r)" % body[:300])
    t.check("record 2" in detail and "key" in detail and "pkey" not in detail and "Key (" not in detail
            and "Opsdept" not in detail, "the reason names the record, not the server's text: %r" % detail)
    t.eq(snapshot(stack, "semtest.departments"), live_deps, "a refused restore changes nothing")
    rc, err = loader_cmd(stack, "restore", "--dataset", "semtest.departments", "--in", write(work, "dup.avro", dup))
    t.check(rc == 1 and "record 2" in err and "pkey" not in err, "freshet-loader restore: exit 1 and the same "
            "reason (%d %r)" % (rc, err[-300:]))
    t.eq(snapshot(stack, "semtest.departments"), live_deps, "... and changes nothing")
    st, body = post(stack, "/admin/restore/semtest.departments", good)
    t.eq((st, snapshot(stack, "semtest.departments")), (200, deps), "the unpatched file restores (%r)" % body[:200])
    t.eq(stack["api"].stop(), 0, "api exits 0")
    t.eq(stack["loader"].stop(), 0, "loader exits 0")


def post(stack, path, body=b""):
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=60)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        c.close()


def write(d, name, data):
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


if __name__ == "__main__":
    TestRun("e2e_backup").run(main)
