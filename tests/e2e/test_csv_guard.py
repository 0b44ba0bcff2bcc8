"""e2e: the CSV formula guard (docs/security.md "CSV answers and exports";
pipeline tests/e2e/pipelines/csvguard).

A text cell starting with = + - @ TAB or CR is served in CSV with a leading
' ("=1+1" -> "'=1+1"), by a streamed list route (cursor), by a buffered
one-row route, with ?format=csv and with Accept: text/csv; JSON keeps the
value as stored; numbers (a negative numeric or bigint) are written as they
are. A route with output.csv_raw serves the cells as stored. The loader's
exports apply the same rule (an export with csv_raw writes them as stored),
so each route's CSV is byte for byte its export's file."""
import glob
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "csvguard")

DROP = ("id,label,amount,delta\n"
        "1,=1+1,-2.5,-3\n"
        "2,+cmd|' /C calc'!A0,1,4\n"
        "3,-minus,0,0\n"
        "4,@SUM(A1:A9),,\n"
        "5,\"\ttab\",2,-1\n"
        "6,\"=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\",3,3\n"
        "7,plain,-0.5,-7\n"
        "8,a=1,,\n"
        "9,\"\r=cr\",1,1\n")

LABELS = ["=1+1", "+cmd|' /C calc'!A0", "-minus", "@SUM(A1:A9)", "\ttab", '=HYPERLINK("http://x","a,b")', "plain",
          "a=1", "\r=cr"]

GUARDED = (b"label,amount,delta\n"
           b"'=1+1,-2.5,-3\n"
           b"'+cmd|' /C calc'!A0,1,4\n"
           b"'-minus,0,0\n"
           b"'@SUM(A1:A9),,\n"
           b"'\ttab,2,-1\n"
           b"\"'=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\",3,3\n"
           b"plain,-0.5,-7\n"
           b"a=1,,\n"
           b"\"'\r=cr\",1,1\n")

RAW = (b"label,amount,delta\n"
       b"=1+1,-2.5,-3\n"
       b"+cmd|' /C calc'!A0,1,4\n"
       b"-minus,0,0\n"
       b"@SUM(A1:A9),,\n"
       b"\ttab,2,-1\n"
       b"\"=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\",3,3\n"
       b"plain,-0.5,-7\n"
       b"a=1,,\n"
       b"\"\r=cr\",1,1\n")


def raw(stack, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), r.getheader("Content-Type") or ""
    finally:
        c.close()


def newest(outdir, prefix, want):
    files = sorted(glob.glob(os.path.join(outdir, prefix + "-*.csv")))
    if not files:
        return None
    with open(files[-1], "rb") as f:
        data = f.read()
    return data if data.count(b"\n") >= want.count(b"\n") else None


def main(t):
    stack = t.stack = Stack(pipelines=PIPE).start("loader", "ingest", "api")
    stack.drop("cg", "notes", "a.csv", DROP)
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM cg.notes") == 9, 30, what="notes loaded")
    t.eq([r[0] for r in stack.pg.query("SELECT label FROM cg.notes ORDER BY id")], LABELS,
         "the labels are stored as dropped (trigger characters first)")

    # JSON: values as stored
    st, b, _ = raw(stack, "/cg/cells")
    t.eq(st, 200, "GET /cg/cells (JSON)")
    t.eq([r["label"] for r in json.loads(b)], LABELS, "JSON labels unchanged (no ' added)")
    t.eq(json.loads(b)[0], {"label": "=1+1", "amount": -2.5, "delta": -3}, "JSON row 1: \"=1+1\", numbers")

    # CSV: text cells guarded, numbers (negative ones too) as they are
    for how, hdrs, path in (("?format=csv", {}, "/cg/cells?format=csv"),
                            ("Accept: text/csv", {"Accept": "text/csv"}, "/cg/cells")):
        st, b, ct = raw(stack, path, hdrs)
        t.check(st == 200 and ct.startswith("text/csv"), "%s: 200 text/csv (%d %s)" % (how, st, ct))
        t.eq(b, GUARDED, "list route CSV (%s): formula cells start with '" % how)
    st, b, _ = raw(stack, "/cg/cell/1?format=csv")
    t.eq((st, b), (200, b"label,amount,delta\n'=1+1,-2.5,-3\n"), "one-row route CSV: \"=1+1\" served as \"'=1+1\"")
    st, b, _ = raw(stack, "/cg/cell/1")
    t.eq((st, json.loads(b)), (200, {"label": "=1+1", "amount": -2.5, "delta": -3}), "one-row route JSON unchanged")

    # the opt-out: output.csv_raw
    st, b, _ = raw(stack, "/cg/cells-raw?format=csv")
    t.eq((st, b), (200, RAW), "csv_raw route: cells as stored")
    st, b, _ = raw(stack, "/cg/cells-raw")
    t.eq([r["label"] for r in json.loads(b)], LABELS, "csv_raw route JSON unchanged")

    # the exports: the same rule, byte for byte the routes' CSV
    outdir = os.path.join(stack.data_dir, "output", "cg")
    guarded = wait_until(lambda: newest(outdir, "guarded", GUARDED), 30, what="guarded export written")
    t.eq(guarded, GUARDED, "export: formula cells start with ' (numbers as they are)")
    exported_raw = wait_until(lambda: newest(outdir, "raw", RAW), 30, what="raw export written")
    t.eq(exported_raw, RAW, "export with csv_raw: cells as stored")
    t.eq(raw(stack, "/cg/cells?format=csv")[1], guarded, "route CSV is byte for byte the guarded export")
    t.eq(raw(stack, "/cg/cells-raw?format=csv")[1], exported_raw, "csv_raw route CSV is byte for byte the raw export")

    for d in ("api", "ingest", "loader"):
        t.eq(stack[d].stop(), 0, "%s exits 0" % d)


if __name__ == "__main__":
    TestRun("csv_guard").run(main)
