"""e2e: /docs renders /openapi.json in a real browser (docs/api-auth.md). The page
and its UI files are embedded in freshet-api (third_party/npm/
swagger-ui-dist, extracted at build time); Debian's chromium loads
http://127.0.0.1:PORT/docs headless and the rendered DOM must show the
paths /openapi.json declares. Fails (never passes silently) when chromium
is missing: deploy/packages-test.txt installs it."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def main(t):
    stack = h.Stack(extra_env={"FRESHET_API_WORKERS": "1"})
    t.stack = stack
    stack.start("api")

    st, page = stack.get("/docs")
    t.eq(st, 200, "GET /docs")
    t.check("/docs/ui.js" in page and "/docs/ui.css" in page, "the page loads the embedded UI")
    st, js = stack.get("/docs/ui.js")
    t.check(st == 200 and "SwaggerUIBundle" in js and len(js) > 100000, "GET /docs/ui.js is the swagger-ui bundle")
    st, css = stack.get("/docs/ui.css")
    t.check(st == 200 and ".swagger-ui" in css, "GET /docs/ui.css")
    st, init = stack.get("/docs/init.js")
    t.check(st == 200 and "/openapi.json" in init, "init.js points the UI at /openapi.json")
    st, _ = stack.request("POST", "/docs", body="")
    t.eq(st, 405, "POST /docs -> 405")

    st, spec = stack.get("/openapi.json")
    if not t.eq(st, 200, "GET /openapi.json (generated from the routes)"):
        return
    paths = sorted((spec or {}).get("paths", {}).keys())
    t.check(len(paths) > 0, "/openapi.json declares paths")

    chromium = find_chromium()
    if not t.check(chromium is not None, "chromium is installed (apt-get install chromium; "
                                         "it is in deploy/packages-test.txt)"):
        return
    profile = h.tmpdir("freshet-chromium-")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--user-data-dir=" + profile, "--virtual-time-budget=15000", "--dump-dom",
           "http://127.0.0.1:%d/docs" % stack.api_port]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
    dom = r.stdout.decode(errors="replace")
    if not t.check(r.returncode == 0 and "<html" in dom,
                   "chromium --dump-dom ran (rc %d): %s" % (r.returncode, r.stderr.decode(errors="replace")[-500:])):
        return
    t.check("opblock" in dom, "the UI rendered operations (class opblock) from /openapi.json")
    missing = [p for p in paths if ('data-path="%s"' % p) not in dom and p not in dom]
    t.check(not missing, "every path of /openapi.json is shown in the rendered DOM (missing %r)" % missing[:10])


if __name__ == "__main__":
    h.TestRun("test_docs_ui").run(main)
