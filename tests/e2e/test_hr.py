"""e2e: the hr pipeline (docs/pipelines.md).

- the generated CSV drops (no header, CRLF and LF, empty/invalid fields,
  dangling foreign keys): good rows load, each bad one is in the DLQ with a
  reason; the tables equal a Python reading of the same files;
- GET /v1/report/quarterly_hires and /v1/report/department_hires (year given
  and defaulted) against the Python computation and a plain SQL query;
- CRUD on /v1/department, /v1/job, /v1/user (the api's crud handler): a
  POSTed row is readable at once after 201; 404/409/410/400 on every verb;
  PATCH merges; pagination by offset and by cursor, following Link; POST
  /bulk (CSV and JSON) with bad rows, and with a JSON object (422); a POSTed
  deleted_at is ignored; a hard DELETE purges a soft-deleted row; id is
  optional on POST and in bulk rows (distinct ids under concurrency);
  Idempotency-Key on crud writes (a retried POST/DELETE answers the same);
- freshet-loader backup -> TRUNCATE -> restore gives the identical table, and
  the same through POST /admin/backup and /admin/restore (422 when corrupt);
- the daemons drain on SIGTERM without a sanitizer report (ASan builds)."""
import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BIN, SRC, Stack, TestRun, wait_until  # noqa: E402

GEN = os.path.join(SRC, "pipelines", "hr", "generate.py")
YEAR_NOW = 2024


def parse_ts(s):
    try:
        t = dt.datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
    except ValueError:
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def reference(gen):
    deps = {}
    for r in read_csv(os.path.join(gen, "departments", "departments.csv")):
        if r[1] not in deps.values():  # department is unique: a later row with a taken name is rejected
            deps[int(r[0])] = r[1]
    jobs = {int(r[0]): r[1] for r in read_csv(os.path.join(gen, "jobs", "jobs.csv"))}
    emps, bad = {}, 0
    for name in ("hired_employees.csv", "hired_employees_2.csv"):
        for r in read_csv(os.path.join(gen, "hired_employees", name)):
            ok = len(r) == 5 and all(r) and r[0].isdigit() and r[3].isdigit() and r[4].isdigit()
            t = parse_ts(r[2]) if ok else None
            if not ok or t is None or int(r[3]) not in deps or int(r[4]) not in jobs:
                bad += 1
                continue
            emps[int(r[0])] = (r[1], t, int(r[3]), int(r[4]))
    return deps, jobs, emps, bad


def quarterly(deps, jobs, emps, year):
    c = {}
    for name, t, d, j in emps.values():
        if t.year == year:
            k = (deps[d], jobs[j])
            c.setdefault(k, [0, 0, 0, 0])[(t.month - 1) // 3] += 1
    rows = sorted(c.items(), key=lambda x: (x[0][0].encode(), x[0][1].encode()))
    return [["department", "job", "Q1", "Q2", "Q3", "Q4"]] + [[d, j] + [str(n) for n in q] for (d, j), q in rows]


def department_hires(deps, emps, year):
    c = {}
    for name, t, d, j in emps.values():
        if t.year == year:
            c[d] = c.get(d, 0) + 1
    mean = sum(c.values()) / len(c) if c else 0
    rows = sorted(((d, n) for d, n in c.items() if n > mean), key=lambda x: (-x[1], x[0]))
    return [["id", "department", "hired"]] + [[str(d), deps[d], str(n)] for d, n in rows]


def csv_rows(text):
    return list(csv.reader(io.StringIO(text))) if isinstance(text, str) else text


def main(t):
    stack = t.stack = Stack(pipelines="hr").start()
    gen = os.path.join(stack.base, "gen")
    subprocess.check_call(["/usr/bin/python3", GEN, "--out", gen, "--employees", "1500", "--bad", "30"],
                          stdout=subprocess.DEVNULL)
    deps, jobs, emps, bad = reference(gen)
    t.check(bad >= 25, "the sample has bad employee rows (%d)" % bad)
    for ds in ("departments", "jobs"):
        for name in os.listdir(os.path.join(gen, ds)):
            with open(os.path.join(gen, ds, name), "rb") as f:
                stack.drop("hr", ds, name, f.read())
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM hr.jobs") == len(jobs) and
               stack.pg.scalar("SELECT count(*) FROM hr.departments") == len(deps), 60, what="departments and jobs")
    for name in sorted(os.listdir(os.path.join(gen, "hired_employees"))):
        with open(os.path.join(gen, "hired_employees", name), "rb") as f:
            stack.drop("hr", "hired_employees", name, f.read())

    def emp_table():
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in stack.pg.query(
            "SELECT id, name, datetime, department_id, job_id FROM hr.hired_employees")}

    wait_until(lambda: len(emp_table()) >= len(emps), 60, what="employees loaded")
    t.check(emp_table() == emps, "hired_employees equals the good rows of the files (CRLF and LF alike)")
    t.eq(dict(stack.pg.query("SELECT id, department FROM hr.departments")), deps, "departments")
    t.eq(dict(stack.pg.query("SELECT id, job FROM hr.jobs")), jobs, "jobs")
    r = stack.redis.client()
    wait_until(lambda: r.xlen("fr:dlq:{hr.hired_employees}") >= bad, 30, what="%d dead letters" % bad)
    dlq = [e[1] for e in r.xrange("fr:dlq:{hr.hired_employees}")]
    t.eq(len(dlq), bad, "one dead letter per bad row")
    t.check(all(e.get(b"reason") for e in dlq), "every dead letter has a reason")
    t.check(any(b"does not exist" in e.get(b"reason", b"") for e in dlq), "dangling foreign keys are named")
    wait_until(lambda: r.xlen("fr:dlq:{hr.departments}") == 1, 30, what="the duplicate department name rejected")
    t.check(b"department" in r.xrange("fr:dlq:{hr.departments}")[0][1].get(b"reason", b""),
            "the unique rejection names the column")

    reports(t, stack, deps, jobs, emps)
    crud(t, stack)
    crud_more(t, stack)
    optional_ids(t, stack)
    idempotent_crud(t, stack)
    backup(t, stack)
    for n in ("api", "loader", "ingest"):
        t.eq(stack[n].stop(), 0, "%s exits 0 on SIGTERM" % n)
        hits = [w for w in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if w in stack[n].log()]
        t.eq(hits, [], "%s: no sanitizer report" % n)


def reports(t, stack, deps, jobs, emps):
    for year in (2023, 2024, 1999):
        want = quarterly(deps, jobs, emps, year)
        st, got = stack.get("/v1/report/quarterly_hires?year=%d" % year)
        t.eq((st, csv_rows(got)), (200, want), "quarterly_hires %d vs Python" % year)
        sql = stack.pg.query(
            "SELECT d.department, j.job, " + ", ".join(
                "sum(CASE WHEN date_part('quarter', e.datetime AT TIME ZONE 'UTC') = %d THEN 1 ELSE 0 END)" % q
                for q in (1, 2, 3, 4)) +
            " FROM hr.hired_employees e, hr.departments d, hr.jobs j WHERE d.id = e.department_id AND "
            "j.id = e.job_id AND date_part('year', e.datetime AT TIME ZONE 'UTC') = %s GROUP BY 1, 2 "
            "ORDER BY convert_to(d.department, 'UTF8'), convert_to(j.job, 'UTF8')", (year,))
        t.eq(want[1:], [[a, b] + [str(x) for x in q] for a, b, *q in sql], "quarterly_hires %d vs SQL" % year)
        want = department_hires(deps, emps, year)
        st, got = stack.get("/v1/report/department_hires?year=%d" % year)
        t.eq((st, csv_rows(got)), (200, want), "department_hires %d vs Python" % year)
    t.check(len(department_hires(deps, emps, 2024)) > 2, "some departments are above the mean")
    t.eq(csv_rows(stack.get("/v1/report/quarterly_hires")[1]), quarterly(deps, jobs, emps, YEAR_NOW),
         "quarterly_hires defaults to the pipeline's year")
    t.eq(csv_rows(stack.get("/v1/report/department_hires")[1]), department_hires(deps, emps, YEAR_NOW),
         "department_hires defaults to the pipeline's year")
    t.eq(stack.get("/v1/report/department_hires?year=twenty")[0], 422, "a bad year -> 422")


def crud(t, stack):
    what = " (needs the crud routes /v1/department, /v1/job, /v1/user: helper 6's crud handler)"
    st, got = stack.request("POST", "/v1/department", {"id": 900, "department": "Quality"})
    if not t.eq(st, 201, "POST /v1/department -> 201" + what):
        return
    st, got = stack.get("/v1/department/900")
    t.check(st == 200 and got.get("department") == "Quality", "a POSTed row is readable at once (%r)" % (got,))
    t.eq(stack.request("POST", "/v1/department", {"id": 900, "department": "Quality"})[0], 201,
         "POST of an equal row -> 201 (retries are safe)")
    t.eq(stack.get("/v1/department/987654")[0], 404, "unknown id -> 404")
    t.eq(stack.request("PUT", "/v1/department/900", {"id": 900, "department": "Sales"})[0], 409,
         "PUT to a name another row holds -> 409")
    t.eq(stack.request("PATCH", "/v1/department/900", {"department": "Quality Assurance"})[0], 200, "PATCH -> 200")
    st, _ = stack.request("POST", "/v1/user", {"id": 99001, "name": "New Hire", "datetime": "2024-06-01T09:00:00Z",
                                               "department_id": 900, "job_id": 1})
    t.eq(st, 201, "POST /v1/user with live FKs -> 201")
    st, got = stack.request("POST", "/v1/user", {"id": 99002, "name": "Nobody", "datetime": "2024-06-01T09:00:00Z",
                                                 "department_id": 123456, "job_id": 1})
    t.check(st == 400 and "department_id" in str(got), "a dangling FK -> 400 naming it (%r %r)" % (st, got))
    t.eq(stack.request("DELETE", "/v1/department/900")[0], 204, "DELETE -> 204")
    t.eq(stack.get("/v1/department/900")[0], 410, "soft-deleted -> 410")
    t.eq(stack.request("DELETE", "/v1/department/900")[0], 410, "DELETE of a soft-deleted row -> 410")
    st, got = stack.request("POST", "/v1/user", {"id": 99003, "name": "Late", "datetime": "2024-06-01T09:00:00Z",
                                                 "department_id": 900, "job_id": 1})
    t.eq(st, 400, "a FK to a soft-deleted row -> 400")
    t.eq(stack.request("POST", "/v1/department", {"id": 900, "department": "Quality Assurance"})[0], 201,
         "POST of a soft-deleted row reactivates it")
    t.eq(stack.get("/v1/department/900")[0], 200, "reactivated")
    t.eq(stack.request("DELETE", "/v1/user/99001", headers={"X-Soft-Delete": "false"})[0], 204, "hard DELETE -> 204")
    t.eq(stack.get("/v1/user/99001")[0], 404, "a hard-deleted row is gone: 404")
    body = "id,job\n901,Tester\n902,\n903,Auditor\nx,Broken\n"
    st, got = stack.request("POST", "/v1/job/bulk", body, headers={"Content-Type": "text/csv"})
    t.check(st == 201 and isinstance(got, dict) and got.get("inserted") == 2 and len(got.get("rejected", [])) == 2,
            "POST /v1/job/bulk CSV with 2 bad lines -> 201 inserted 2, 2 rejected (%r %r)" % (st, got))
    t.eq(stack.request("POST", "/v1/job/bulk", [{"id": 5000 + i, "job": "j%d" % i} for i in range(1001)])[0], 422,
         "bulk of 1001 rows -> 422")
    st, got = stack.get("/v1/job?limit=5&offset=0")
    t.check(st == 200 and isinstance(got, list) and len(got) == 5, "GET /v1/job?limit=5 -> 5 rows (%r)" % (st,))


def get_link(stack, path):
    """GET path -> (status, json body, the Link header or None)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None), r.getheader("Link")
    finally:
        c.close()


def crud_more(t, stack):
    # pagination: follow Link rel="next" from the default page to the end
    active = [list(r) for r in stack.pg.query("SELECT id, department FROM hr.departments WHERE deleted_at IS NULL "
                                              "ORDER BY id")]
    t.check(len(active) > 10, "more than one page of departments (%d)" % len(active))
    path, seen, pages = "/v1/department", [], 0
    while path and pages < 50:
        st, got, link = get_link(stack, path)
        if not t.eq(st, 200, "GET %s" % path):
            return
        t.check(pages > 0 or len(got) == 10, "limit defaults to 10 (%d)" % len(got))
        seen += [[r["id"], r["department"]] for r in got]
        path = None
        if link:
            t.check(link.startswith("</v1/department?") and link.endswith('>; rel="next"'), "Link shape (%r)" % link)
            path = link[1:link.index(">")]
        pages += 1
    t.eq(seen, active, "the Link chain lists every active department once, by id")
    st, got, link = get_link(stack, "/v1/department?limit=1000")
    t.check(st == 200 and len(got) == len(active) and link is None, "limit=1000: one page, no Link")
    # keyset: cursor=K starts after key K, and the Link carries the next cursor
    path, seen, pages = "/v1/department?limit=4&cursor=0", [], 0
    while path and pages < 50:
        st, got, link = get_link(stack, path)
        if not t.eq(st, 200, "GET %s" % path):
            return
        seen += [[r["id"], r["department"]] for r in got]
        path = link[1:link.index(">")] if link else None
        t.check(path is None or "cursor=%d" % got[-1]["id"] in path, "the next cursor is the last id (%r)" % link)
        pages += 1
    t.eq(seen, active, "the cursor chain lists every active department once, by id")
    t.eq(stack.get("/v1/department?cursor=abc")[0], 422, "a non-integer cursor -> 422")
    for q in ("limit=1001", "limit=0", "limit=x", "offset=-1"):
        t.eq(stack.get("/v1/department?" + q)[0], 422, "GET /v1/department?%s -> 422" % q)
    t.eq(stack.get("/v1/department/abc")[0], 422, "a non-integer id -> 422")
    t.check("deleted_at" not in get_link(stack, "/v1/job?limit=1")[1][0], "deleted_at is not in the rows")

    # POST of a row equal to an active one answers that row
    did, dname = active[0]
    st, got = stack.request("POST", "/v1/department", {"id": did, "department": dname})
    if isinstance(got, dict):
        got.pop("deleted_at", None)  # push.c echoes every column, deleted_at (null) included
    t.check(st == 201 and got == {"id": did, "department": dname},
            "POST of an equal active row -> 201 with the row (%r %r)" % (st, got))
    st, _ = stack.request("POST", "/v1/department", {"id": 7004, "department": "Ghost",
                                                     "deleted_at": "2024-01-01T00:00:00Z"})
    t.check(st == 201 and stack.get("/v1/department/7004")[0] == 200,
            "a POSTed deleted_at is ignored: only DELETE soft-deletes (%r)" % st)
    st, got = stack.request("POST", "/v1/department/bulk", [{"id": 7005, "department": "Ghost 2",
                                                             "deleted_at": "2024-01-01T00:00:00Z"}])
    t.check(st == 201 and stack.get("/v1/department/7005")[0] == 200, "... in a bulk too (%r %r)" % (st, got))
    st, got = stack.request("POST", "/v1/department", {"id": 7001, "department": ""})
    t.check(400 <= st < 500 and st != 404, "POST with an empty required field -> 4xx (%r %r)" % (st, got))
    t.eq(stack.get("/v1/department/7001")[0], 404, "... and nothing inserted")

    # PATCH merges with the stored row
    uid, name, when, dep, job = stack.pg.query(
        "SELECT id, name, datetime, department_id, job_id FROM hr.hired_employees "
        "WHERE deleted_at IS NULL ORDER BY id LIMIT 1")[0]
    t.eq(stack.request("PATCH", "/v1/user/%d" % uid, {"name": "Renamed Person"})[0], 200, "PATCH /v1/user/{id}")
    t.eq(stack.pg.query("SELECT name, datetime, department_id, job_id FROM hr.hired_employees WHERE id = %s",
                        (uid,))[0], ("Renamed Person", when, dep, job), "PATCH kept the other fields")
    st, got = stack.get("/v1/user/%d" % uid)
    t.check(st == 200 and got.get("name") == "Renamed Person", "GET after PATCH (%r)" % (got,))
    st, got = stack.request("PATCH", "/v1/user/%d" % uid, {"job_id": 98765})
    t.check(st == 400 and "job_id" in json.dumps(got), "PATCH to a missing FK -> 400 naming it (%r %r)" % (st, got))
    jobs = stack.pg.query("SELECT id, job FROM hr.jobs WHERE deleted_at IS NULL ORDER BY id LIMIT 2")
    t.eq(stack.request("PATCH", "/v1/job/%d" % jobs[0][0], {"job": jobs[1][1]})[0], 409,
         "PATCH to a name another row holds -> 409")
    t.eq(stack.pg.scalar("SELECT job FROM hr.jobs WHERE id = %s", (jobs[0][0],)), jobs[0][1], "... unchanged")
    st, _ = stack.request("PUT", "/v1/job/%d" % jobs[0][0], {"job": jobs[0][1] + " II"})
    t.eq(st, 200, "PUT /v1/job/{id} -> 200")
    t.eq(stack.get("/v1/job/%d" % jobs[0][0])[1].get("job"), jobs[0][1] + " II", "PUT is read back at once")

    # unknown and deleted ids on every verb
    for m, body in (("PUT", {"department": "Nope"}), ("PATCH", {"department": "Nope"}), ("DELETE", None)):
        t.eq(stack.request(m, "/v1/department/987654", body)[0], 404, "%s of an unknown id -> 404" % m)
    t.eq(stack.request("POST", "/v1/department", {"id": 7002, "department": "Short Lived"})[0], 201, "POST 7002")
    t.eq(stack.request("DELETE", "/v1/department/7002")[0], 204, "DELETE 7002")
    t.check(stack.pg.scalar("SELECT deleted_at IS NOT NULL FROM hr.departments WHERE id = 7002"),
            "a soft DELETE keeps the row with deleted_at set")
    for m, body in (("PUT", {"department": "Back"}), ("PATCH", {"department": "Back"})):
        t.eq(stack.request(m, "/v1/department/7002", body)[0], 410, "%s of a soft-deleted id -> 410" % m)
    st, got, _ = get_link(stack, "/v1/department?limit=1000")
    t.check(all(r["id"] != 7002 for r in got), "a soft-deleted row is not listed")
    t.eq(stack.request("DELETE", "/v1/department/7002", headers={"X-Soft-Delete": "false"})[0], 204,
         "a hard DELETE of a soft-deleted row purges it -> 204")
    t.eq(stack.pg.scalar("SELECT count(*) FROM hr.departments WHERE id = 7002"), 0, "... the row is gone")
    t.eq(stack.get("/v1/department/7002")[0], 404, "... and reads as unknown: 404")
    t.eq(stack.request("POST", "/v1/job", {"id": 7003, "job": "Temp"})[0], 201, "POST job 7003")
    t.eq(stack.request("DELETE", "/v1/job/7003", headers={"X-Soft-Delete": "false"})[0], 204, "hard DELETE 7003")
    t.eq(stack.pg.scalar("SELECT count(*) FROM hr.jobs WHERE id = 7003"), 0, "a hard DELETE removes the row")

    # bulk JSON: a dangling FK and an empty field are rejected by index, the rest loads
    rows = [{"id": 88000 + i, "name": "Bulk %d" % i, "datetime": "2024-02-0%dT10:00:00Z" % (i + 1),
             "department_id": did, "job_id": jobs[1][0]} for i in range(5)]
    rows[1]["department_id"] = 987654
    rows[3]["name"] = ""
    st, got = stack.request("POST", "/v1/user/bulk", rows)
    rej = sorted(r.get("row") for r in got.get("rejected", [])) if isinstance(got, dict) else None
    t.check(st == 201 and got.get("inserted") == 3 and rej is not None and len(rej) == 2,
            "bulk JSON: 201 inserted 3, 2 rejected (%r %r)" % (st, got))
    t.check(isinstance(got, dict) and all(r.get("reason") for r in got.get("rejected", [])), "rejections have reasons")
    t.check(isinstance(got, dict) and any("department_id" in r.get("reason", "") for r in got.get("rejected", [])),
            "the dangling FK is named (%r)" % (got,))
    t.eq(stack.pg.scalar("SELECT count(*) FROM hr.hired_employees WHERE id BETWEEN 88000 AND 88004"), 3,
         "the 3 good bulk rows are in the table")
    t.eq(stack.request("POST", "/v1/job/bulk", [])[0], 422, "an empty bulk -> 422")
    st, got = stack.request("POST", "/v1/job/bulk", {"id": 7100, "job": "Not a list"})
    det = got.get("detail") if isinstance(got, dict) else None
    t.check(st == 422 and isinstance(det, list) and det and det[0].get("loc") == ["body"] and det[0].get("msg")
            and det[0].get("type"), "bulk with a JSON object -> 422 naming the body (%r %r)" % (st, got))
    t.eq(stack.pg.scalar("SELECT count(*) FROM hr.jobs WHERE id = 7100"), 0, "... and nothing inserted")
    t.eq(stack.request("DELETE", "/v1/job")[0], 405, "DELETE on the collection -> 405")


def optional_ids(t, stack):
    """id is optional on POST / and in bulk rows: the next free ids, race-free."""
    import threading
    top = stack.pg.scalar("SELECT max(id) FROM hr.departments")
    st, got = stack.request("POST", "/v1/department", {"department": "Auto One"})
    nid = got.get("id") if isinstance(got, dict) else None
    t.check(st == 201 and isinstance(nid, int) and nid > top, "POST without id -> 201 with a new id (%r %r)" % (st, got))
    t.check(stack.get("/v1/department/%s" % nid)[1].get("department") == "Auto One", "the assigned id reads back")
    got = []

    def one(i):
        got.append(stack.request("POST", "/v1/department", {"department": "Auto Par %d" % i}))
    ths = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    ids = [g.get("id") for s_, g in got if s_ == 201 and isinstance(g, dict)]
    t.check(len(ids) == 6 and len(set(ids)) == 6, "6 concurrent POSTs without id get 6 distinct ids (%r)" % got)
    t.eq(stack.pg.scalar("SELECT count(*) FROM hr.departments WHERE department LIKE 'Auto Par %%'"), 6,
         "... and 6 rows")
    st, got = stack.request("POST", "/v1/job/bulk", [{"job": "Auto Job A"}, {"id": 7200, "job": "Fixed Job"},
                                                     {"job": "Auto Job B"}])
    t.check(st == 201 and isinstance(got, dict) and got.get("inserted") == 3,
            "bulk rows without id -> 201 inserted 3 (%r %r)" % (st, got))
    auto = stack.pg.query("SELECT id FROM hr.jobs WHERE job LIKE 'Auto Job %' ORDER BY job")
    t.check(len(auto) == 2 and auto[0][0] != auto[1][0] and 7200 not in (auto[0][0], auto[1][0]),
            "bulk rows without id got distinct new ids (%r)" % auto)
    t.eq(stack.pg.scalar("SELECT job FROM hr.jobs WHERE id = 7200"), "Fixed Job", "a given id is kept")


def idempotent_crud(t, stack):
    """Idempotency-Key on crud writes: POST, PATCH, DELETE applied once."""
    key = {"Idempotency-Key": "hr-create-1"}
    st1, b1 = stack.request("POST", "/v1/department", {"department": "Once Only"}, headers=key)
    t.eq(st1, 201, "POST with a key -> 201")
    st2, b2 = stack.request("POST", "/v1/department", {"department": "Once Only"}, headers=key)
    t.eq((st2, b2), (st1, b1), "the retry answers the same (same assigned id)")
    t.eq(stack.pg.scalar("SELECT count(*) FROM hr.departments WHERE department = 'Once Only'"), 1, "one row")
    did = b1.get("id") if isinstance(b1, dict) else None
    dkey = {"Idempotency-Key": "hr-delete-1"}
    t.eq(stack.request("DELETE", "/v1/department/%s" % did, headers=dkey)[0], 204, "DELETE with a key -> 204")
    t.eq(stack.request("DELETE", "/v1/department/%s" % did, headers=dkey)[0], 204,
         "the retried DELETE answers 204 again (not 410)")
    t.eq(stack.request("DELETE", "/v1/department/%s" % did)[0], 410, "a DELETE without the key -> 410")
    t.eq(stack.request("PATCH", "/v1/department/%s" % did, {"department": "x"}, headers=dkey)[0], 422,
         "the key on another request -> 422")


def backup(t, stack):
    before = stack.pg.query("SELECT * FROM hr.hired_employees ORDER BY id")
    out = os.path.join(stack.base, "hired_employees.avro")
    env = dict(stack.daemons["loader"].env)
    rc = subprocess.run([os.path.join(BIN, "freshet-loader"), "backup", "--dataset", "hr.hired_employees", "--out",
                         out], env=env, cwd=SRC, capture_output=True, text=True)
    if not t.eq(rc.returncode, 0, "freshet-loader backup (%s)" % rc.stderr[-400:]):
        return
    stack.pg.query("TRUNCATE hr.hired_employees")
    t.eq(stack.pg.scalar("SELECT count(*) FROM hr.hired_employees"), 0, "truncated")
    rc = subprocess.run([os.path.join(BIN, "freshet-loader"), "restore", "--dataset", "hr.hired_employees", "--in",
                         out], env=env, cwd=SRC, capture_output=True, text=True)
    t.eq(rc.returncode, 0, "freshet-loader restore (%s)" % rc.stderr[-400:])
    t.check(stack.pg.query("SELECT * FROM hr.hired_employees ORDER BY id") == before,
            "backup -> truncate -> restore gives the identical table")
    with open(out, "r+b") as f:
        f.truncate(os.path.getsize(out) - 7)
    rc = subprocess.run([os.path.join(BIN, "freshet-loader"), "restore", "--dataset", "hr.hired_employees", "--in",
                         out], env=env, cwd=SRC, capture_output=True, text=True)
    t.check(rc.returncode != 0, "a corrupt file is refused")
    t.check(stack.pg.query("SELECT * FROM hr.hired_employees ORDER BY id") == before, "... and changes nothing")

    # the same through the admin routes
    import http.client
    deps = stack.pg.query("SELECT * FROM hr.departments ORDER BY id")

    def post(path, body=b""):
        c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=60)
        try:
            c.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()
    st, b = post("/admin/backup/hr.departments")
    got = json.loads(b) if st == 201 else {}
    path = os.path.join(stack.data_dir, "backups", got.get("file", "-"))
    t.check(st == 201 and got.get("rows") == len(deps) and os.path.exists(path),
            "POST /admin/backup/hr.departments -> 201 and the file under backups/ (%r %r)" % (st, b[:200]))
    if not os.path.exists(path):
        return
    avro = open(path, "rb").read()
    st, b = post("/admin/restore/hr.departments", avro[:-9])
    t.eq(st, 422, "a truncated Avro body -> 422 (%r)" % b[:200])
    t.check(stack.pg.query("SELECT * FROM hr.departments ORDER BY id") == deps, "... and changes nothing")
    stack.pg.query("DELETE FROM hr.departments")
    st, b = post("/admin/restore/hr.departments", avro)
    t.eq(st, 200, "POST /admin/restore/hr.departments (%r)" % b[:200])
    t.check(stack.pg.query("SELECT * FROM hr.departments ORDER BY id") == deps,
            "admin backup -> delete -> restore gives the identical table")
    t.eq(post("/admin/backup/hr.nope")[0], 404, "unknown dataset -> 404")


if __name__ == "__main__":
    TestRun("hr").run(main)
