"""e2e: the football pipeline (docs/pipelines.md) against tools/fake_upstream.

Expected answers are computed here, independently, from the fake's --dump:
- run 1 (the teams of one competition come back malformed): the run stops
  there (ingest's rule: a bad response fails the run, the next run retries);
  the competitions and the teams answered before it load, nothing from the
  malformed response, a DLQ entry; the quota (5 requests per 3 s here) is
  honoured from its headers: no request is sent while it is spent (the fake
  marks such requests quota_exceeded);
- run 2 (three 500s on /teams): retried, then everything loads: dims, facts,
  a team in two competitions is one team and two facts, the World Cup (empty
  team list) is in dim_competitions and the report with 0;
- run 3 (two 429 "Wait 2 seconds."): waits as told, then continues; a rerun
  changes nothing;
- run 4 (two truncated responses, a transport error): retried, then loads;
- the summary export CSV under output/football/ (order: count desc, name
  desc) and, when the pipeline declares routes, GET /reports/football/summary
  as JSON and CSV."""
import csv
import http.client
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import FakeUpstream, Stack, TestRun, wait_until  # noqa: E402

TOKEN = "test-token-42"
DLQ = "fr:dlq:{football.teams}"
MALFORMED = 2003  # Eredivisie, 7th in the list: some load before it
TRUNCATED = 2002  # Bundesliga


def expected(dump, skip=()):
    comps = {c["id"]: c["name"] for c in dump["competitions"]}
    facts = set()
    teams = {}
    for cid, ts in dump["teams"].items():
        if int(cid) in skip:
            continue
        for t in ts:
            facts.add((int(cid), t["id"]))
            teams[t["id"]] = t["name"]
    counts = {cid: sum(1 for f in facts if f[0] == cid) for cid in comps}
    report = sorted(((comps[c], n) for c, n in counts.items()), key=lambda r: (r[1], r[0]), reverse=True)
    return comps, teams, facts, report


def tables(stack):
    return (dict(stack.pg.query("SELECT id, name FROM football.dim_competitions")),
            dict(stack.pg.query("SELECT id, name FROM football.dim_teams")),
            set(stack.pg.query("SELECT competition_id, team_id FROM football.fact_competitions")))


def football_requests(fake):
    return [r for r in fake.requests() if r["path"].startswith("/v4/")]


def run_done(fake, n_ok):
    """The ingest run sent its 1 + 12 requests and got answers."""
    return len([r for r in football_requests(fake) if r["status"] == 200]) >= n_ok


def check_quota(t, reqs, quota):
    t.check(all(r.get("token") == TOKEN for r in reqs), "every request carries X-Auth-Token")
    over = [r for r in reqs if r.get("quota_exceeded")]
    t.eq(over, [], "no request sent while the quota was spent")
    t.check(any(r.get("remaining") == 0 for r in reqs), "the quota was reached at least once (the test means it)")


def restart_ingest(t, stack, fake):
    t.eq(stack["ingest"].stop(), 0, "ingest exits 0 on SIGTERM")
    fake.control(clear_requests=True, reset_quota=True)  # a new process cannot know the old window
    stack["ingest"].start()


def main(t):
    quota = 5
    fake = FakeUpstream(seed=42, args=["--quota", str(quota), "--quota-window", "3", "--fault", "malformed",
                                       "--fault-match", "/competitions/%d/teams" % MALFORMED]).start()
    dump = fake.dump("football")
    comps, teams, facts, report = expected(dump)
    t.check(any(not v for v in dump["teams"].values()), "the fake has a competition with an empty team list")
    shared = [tid for tid in teams if sum(1 for f in facts if f[1] == tid) > 1]
    t.check(len(shared) > 0, "the fake has teams in two competitions")

    stack = t.stack = Stack(pipelines="football", extra_env={
        "FOOTBALL_API_URL": fake.url, "FOOTBALL_API_TOKEN": TOKEN,
        # our own ceiling off: the fake's 5 per 3 s quota, read from its headers, is what is tested
        "FOOTBALL_API_PER_MINUTE": "100000"}).start()
    r = stack.redis.client()

    # run 1: one competition's teams malformed: the run stops there
    wait_until(lambda: r.xlen(DLQ) >= 1, 90, what="a DLQ entry for the malformed response")
    entry = r.xrange(DLQ)[0][1]
    t.check(b"JSON" in b" ".join(entry.values()), "the DLQ entry gives the reason: %r" % (entry,))
    reqs = football_requests(fake)
    clean = {int(x["path"].split("/")[3]) for x in reqs
             if x["path"].endswith("/teams") and x["status"] == 200 and "fault" not in x}
    t.check(0 < len(clean) < 12, "some competitions answered before the malformed one (%d)" % len(clean))
    _, teams1, facts1, _ = expected(dump, skip=[c for c in comps if c not in clean])
    wait_until(lambda: tables(stack) == (comps, teams1, facts1), 60, what="run 1: what came before the bad response")
    t.eq([f for f in tables(stack)[2] if f[0] == MALFORMED], [], "nothing loaded from the malformed response")
    t.check(stack["ingest"].alive(), "ingest still running after a malformed response")
    check_quota(t, reqs, quota)

    # run 2: 500s on /teams, retried, then all loads
    fake.control(mode="500", count=3, match="/teams")
    restart_ingest(t, stack, fake)
    wait_until(lambda: tables(stack) == (comps, teams, facts), 120, what="run 2: everything loaded")
    reqs = football_requests(fake)
    t.eq(len([x for x in reqs if x["status"] == 500]), 3, "three 500s answered")
    failed = {x["path"] for x in reqs if x["status"] == 500}
    t.check(all(any(y["path"] == p and y["status"] == 200 for y in reqs) for p in failed),
            "each path that got a 500 was retried to a 200")
    check_quota(t, reqs, quota)
    got = tables(stack)
    t.eq(len(got[0]), 12, "12 competitions")
    t.check(all(sum(1 for f in got[2] if f[1] == tid) == 2 for tid in shared if tid in got[1]),
            "a team in two competitions is one team and two facts")
    empty = [int(c) for c, v in dump["teams"].items() if not v]
    t.check(all(c in got[0] for c in empty), "the competition with no teams is in dim_competitions")

    # run 3: two 429s (Wait 2 seconds.), then continue; a rerun changes nothing
    before = tables(stack)
    counts_before = stack.pg.query("SELECT (SELECT count(*) FROM football.competitions), "
                                   "(SELECT count(*) FROM football.teams)")
    fake.control(mode="429", count=2, wait_s=2, match="/teams")
    restart_ingest(t, stack, fake)
    wait_until(lambda: run_done(fake, 13), 120, what="run 3: 13 answered requests")
    reqs = football_requests(fake)
    t.eq(len([x for x in reqs if x["status"] == 429]), 2, "two 429s answered")
    for i, x in enumerate(reqs):
        if x["status"] == 429:
            nxt = [y for y in reqs[i + 1:] if y["path"] == x["path"]]
            # one request at a time: the retry of the first 429 may meet the
            # second one; what matters is that the path ends with a 200
            t.check(nxt and nxt[0]["status"] in (200, 429) and any(y["status"] == 200 for y in nxt),
                    "%s retried to a 200 after its 429" % x["path"])
            if nxt:
                gap = nxt[0]["time"] - x["time"]
                t.check(gap >= 1.9, "after 'Wait 2 seconds.' the retry waited (%.2fs)" % gap)
    check_quota(t, reqs, quota)
    t.eq(tables(stack), before, "rerun: tables unchanged")
    t.eq(stack.pg.query("SELECT (SELECT count(*) FROM football.competitions), (SELECT count(*) FROM football.teams)"),
         counts_before, "rerun: dataset row counts unchanged")

    # run 4: two truncated responses (connection closed mid-body): retried
    fake.control(mode="truncated", count=2, match="/competitions/%d/teams" % TRUNCATED)
    restart_ingest(t, stack, fake)
    wait_until(lambda: len([x for x in football_requests(fake) if x["status"] == 200 and "fault" not in x]) >= 13,
               120, what="run 4: 13 clean answers")
    reqs = football_requests(fake)
    t.eq(len([x for x in reqs if x.get("fault") == "truncated"]), 2, "two truncated answers sent")
    t.check(stack["ingest"].alive(), "ingest still running after truncated responses")
    t.eq(tables(stack), before, "run 4: tables unchanged")
    check_quota(t, reqs, quota)
    fake.control(mode="normal")

    # the export: newest summary CSV
    outdir = os.path.join(stack.data_dir, "output", "football")

    def newest_report():
        files = sorted(glob.glob(os.path.join(outdir, "summary-*.csv")))
        if not files:
            return None
        with open(files[-1], newline="") as f:
            rows = list(csv.reader(f))
        return rows if rows[1:] == [[n, str(c)] for n, c in report] else None

    rows = wait_until(newest_report, 30, what="summary CSV with the full report")
    t.eq(rows[0], ["Competition", "Number of Teams"], "CSV header")
    t.eq(rows[-1][1], "0", "the empty competition is last with 0")
    names = [os.path.basename(p) for p in glob.glob(os.path.join(outdir, "summary-*.csv"))]
    t.check(all(len(n) == len("summary-20240617T120000Z.csv") and n[16] == "T" and n.endswith("Z.csv")
                for n in names), "file names carry the UTC timestamp: %r" % names[:3])

    # the route: JSON rows, and CSV byte for byte the file the export wrote
    st, body = stack.get("/reports/football/summary")
    t.eq(st, 200, "GET /reports/football/summary")
    t.eq(body, [{"competition": n, "teams": c} for n, c in report], "summary JSON")
    with open(sorted(glob.glob(os.path.join(outdir, "summary-*.csv")))[-1], "rb") as f:
        written = f.read()
    for how, path, hdrs in (("?format=csv", "/reports/football/summary?format=csv", {}),
                            ("Accept: text/csv", "/reports/football/summary", {"Accept": "text/csv"})):
        c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
        c.request("GET", path, headers=hdrs)
        r = c.getresponse()
        served = r.read()
        c.close()
        t.eq((r.status, served), (200, written), "summary CSV (%s) is byte for byte the exported file" % how)

    for d in ("api", "ingest", "loader"):
        t.eq(stack[d].stop(), 0, "%s exits 0" % d)


if __name__ == "__main__":
    TestRun("e2e_football").run(main)
