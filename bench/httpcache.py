"""HTTP caching benchmark (docs/routes.md "HTTP caching"): conditional GETs
answered 304 and kept SQL-route answers, against nginx in the same run.

  FRESHET_BIN_DIR=build-bench /usr/bin/python3 bench/httpcache.py   (bench/run runs it last)

One api worker and one nginx worker on the same 2 cores, wrk -t1 -c64,
BENCH_ROUNDS interleaved rounds of BENCH_SECONDS each, medians. Cases:
  304 cache route   GET /hc/stock/AB-1 with If-None-Match = its ETag (answered
                    from the process: no Redis)  vs nginx answering a static
                    file of the same body 304 for its own ETag
  304 sql route     GET /hc/items with its ETag (no PostgreSQL)  vs the same nginx 304
  kept sql answer   GET /hc/items (the answer kept in the process)  vs nginx
                    returning the same body (200)
  200 cache route   GET /hc/stock/AB-1 without If-None-Match (in-process
                    cache hit, with ETag, Last-Modified, Age)  vs nginx
                    returning the same body (200): what the headers cost
The table replaces the "HTTP caching" section of bench/results.md (between
its markers), leaving the rest of the file as bench.py wrote it."""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
from harness import SRC, Stack, free_port, tmpdir, wait_until  # noqa: E402

PIPE = os.path.join(SRC, "tests", "e2e", "pipelines", "httpc")
BEGIN, END = "<!-- httpcache:begin -->", "<!-- httpcache:end -->"
CONNS = 64


def nginx_static(files, base):
    """nginx (1 worker) serving files (name -> body) under /s/ with ETags, and
    the same bodies as fixed answers at /b/<name>."""
    port = free_port()
    d = os.path.join(base, "nginx-hc")
    root = os.path.join(d, "root", "s")
    os.makedirs(root, exist_ok=True)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    for name, body in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(body)
    locs = "".join("    location = /b/%s { return 200 '%s'; }\n" % (n, b.replace("'", "\\'")) for n, b in files.items())
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/logs/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; etag on;
  server { listen 127.0.0.1:%d reuseport; default_type application/json; root %s/root;
%s  } }
""" % (d, d, port, d, locs))
    p = subprocess.Popen(["nginx", "-c", conf, "-p", d], stderr=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["curl", "-fs", "http://127.0.0.1:%d/s/%s" % (port, next(iter(files)))],
                                      capture_output=True).returncode == 0, 10, what="nginx")
    return p, port


def head(url, inm=None):
    """(status, {lower-case header: value}, body) of one GET."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        c.request("GET", u.path + ("?" + u.query if u.query else ""), headers={"If-None-Match": inm} if inm else {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        c.close()


def lua(gen, name, inm):
    path = os.path.join(gen, name + ".lua")
    with open(path, "w") as f:
        if inm:
            f.write("wrk.headers[\"If-None-Match\"] = %s\n" % json.dumps(inm))
        f.write(B.LUA_DONE)
    return path


def main():
    st = Stack(pipelines=PIPE, extra_env={"FRESHET_LOG_LEVEL": "warn", "FRESHET_API_WORKERS": "1"}).start()
    gen = tmpdir("freshet-bench-hc-")
    rows = "".join("AB-%d,%d,%s\n" % (i, i * 3, "north" if i % 2 else "south") for i in range(1, 41))
    st.drop("hc", "items", "a.csv", "sku,qty,place\n" + rows)
    fr = "http://127.0.0.1:%d" % st.api_port
    wait_until(lambda: head(fr + "/hc/stock/AB-40")[0] == 200, 60, what="items cached")
    wait_until(lambda: "etag" in head(fr + "/hc/items")[1], 30, what="ETag on /hc/items")
    s1, h1, b1 = head(fr + "/hc/stock/AB-1")
    s2, h2, b2 = head(fr + "/hc/items")
    assert s1 == 200 and s2 == 200, (s1, s2)
    ng, ng_port = nginx_static({"stock.json": b1, "items.json": b2}, st.base)
    ngu = "http://127.0.0.1:%d" % ng_port
    n_etag = {n: head(ngu + "/s/" + n)[1]["etag"] for n in ("stock.json", "items.json")}
    for url, tag in ((fr + "/hc/stock/AB-1", h1["etag"]), (fr + "/hc/items", h2["etag"]),
                     (ngu + "/s/stock.json", n_etag["stock.json"])):
        assert head(url, tag)[0] == 304, url
    cases = [
        ("304 cache route /hc/stock/{sku}", fr, "/hc/stock/AB-1", h1["etag"], ngu, "/s/stock.json",
         n_etag["stock.json"], "nginx 304, static file with its ETag"),
        ("304 sql route /hc/items", fr, "/hc/items", h2["etag"], ngu, "/s/items.json", n_etag["items.json"],
         "nginx 304, static file with its ETag"),
        ("kept sql answer /hc/items (200, %d B)" % len(b2), fr, "/hc/items", None, ngu, "/b/items.json", None,
         "nginx 200, fixed body"),
        ("200 cache route /hc/stock/{sku} with its caching headers", fr, "/hc/stock/AB-1", None, ngu,
         "/b/stock.json", None, "nginx 200, fixed body"),
    ]
    out = []
    load0 = os.getloadavg()[0]
    try:
        for name, ours, path, tag, ref, rpath, rtag, ref_name in cases:
            o, r = [], []
            lo, lr = lua(gen, "o", tag), lua(gen, "r", rtag)
            for _ in range(B.ROUNDS):
                o.append(B.wrk(ours, path, CONNS, lo))
                r.append(B.wrk(ref, rpath, CONNS, lr))
            mo = statistics.median(x["rps"] for x in o)
            mr = statistics.median(x["rps"] for x in r)
            errs = sum(x["errors"] for x in o + r)
            print("%s: freshet %s, nginx %s req/s" % (name, [round(x["rps"]) for x in o], [round(x["rps"]) for x in r]),
                  flush=True)
            out.append((name, mo, mr, mo / mr if mr else 0.0, ref_name, errs,
                        statistics.median(x["p99"] for x in o), statistics.median(x["p99"] for x in r)))
        st_m, text = st.get("/metrics")
        n304 = int(re.search(r"^api_not_modified_total (\d+)$", text, re.M).group(1))
        hits = int(re.search(r'^api_answer_cache_total\{result="hit"\} (\d+)$', text, re.M).group(1))
    finally:
        B.stop_proc(ng)
        for n in ("ingest", "loader", "api"):
            st[n].stop()
    lines = [BEGIN, "## HTTP caching (bench/httpcache.py)", "",
             "1 api worker vs 1 nginx worker, `wrk -t1 -c%d`, %d interleaved rounds of %d s, medians; %d CPUs, "
             "load average %.1f at the start and %.1f at the end (other work shares the machine: compare ratios, and "
             "expect them to move between runs). The api answered %d 304s and %d kept answers in the run "
             "(its /metrics)." % (CONNS, B.ROUNDS, B.SECONDS, os.cpu_count(), load0, os.getloadavg()[0], n304, hits),
             "",
             "| case | freshet req/s | nginx req/s | ratio | target | verdict | freshet p99 ms | nginx p99 ms | "
             "reference is | wrk errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, mo, mr, ratio, ref_name, errs, p99o, p99r in out:
        lines.append("| %s | %.0f | %.0f | %.2f | >=0.8x | %s | %.2f | %.2f | %s | %d |" % (
            name, mo, mr, ratio, "ok" if ratio >= 0.8 else "MISS", p99o, p99r, ref_name, errs))
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    path = os.path.join(SRC, "bench", "results.md")
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
