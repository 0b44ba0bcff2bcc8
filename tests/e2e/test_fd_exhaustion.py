"""e2e: the api under more connections than its descriptor limit allows
(docs/security.md "File descriptors").

freshet-api runs with RLIMIT_NOFILE 256 (soft and hard, so it cannot raise
it) and 4 workers; the test opens 1,200 loopback connections to the api
port and holds them for 5 s. While saturated the api must not spin (CPU
time from /proc/PID/stat stays far below the wall time) nor flood its log
(accept warnings are rate-limited); once the clients close, /healthz
answers again; SIGTERM makes it exit 0. Then the same for an admin port:
freshet-ingest with the same limit and 600 connections to its admin port.
"""
import errno
import os
import resource
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BIN, SRC, Stack, TestRun, wait_until  # noqa: E402

LIMIT = 256
API_CONNS = 1200
ADMIN_CONNS = 600
HOLD_S = 5.0
CPU_BOUND_S = 2.0  # a spinning worker burns about HOLD_S per core; an idle one well under 0.5 s


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def open_conns(port, n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            continue
        socks.append(s)
    return socks


def start_limited(stack, name, extra_env):
    """Starts a daemon of the stack with RLIMIT_NOFILE = LIMIT (soft and hard)."""
    d = stack[name]
    env = dict(d.env)
    env.update(extra_env)

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))

    log = open(d.log_path, "ab")
    d.proc = subprocess.Popen([os.path.join(BIN, "freshet-" + name)], env=env, stdout=log, stderr=log, cwd=SRC,
                              preexec_fn=low_limit)
    log.close()
    return d


def saturate(t, stack, d, port, n, servers):
    """Holds n connections to port for HOLD_S, then checks d recovers."""
    pid = d.proc.pid
    cpu0 = cpu_seconds(pid)
    t0 = time.time()
    socks = open_conns(port, n)
    t.check(len(socks) > LIMIT, "%s: opened more connections than its limit (%d)" % (d.name, len(socks)))
    time.sleep(HOLD_S)
    cpu = cpu_seconds(pid) - cpu0
    wall = time.time() - t0
    t.check(d.alive(), "%s survives the saturation" % d.name)
    t.check(cpu < CPU_BOUND_S, "%s: CPU time while saturated: %.2f s over %.1f s (bound %.1f s)" %
            (d.name, cpu, wall, CPU_BOUND_S))
    for s in socks:
        s.close()
    wait_until(lambda: stack.get("/healthz", port=port)[0] == 200, 30, what="%s /healthz after the clients left" % d.name)
    t.check(True, "%s answers /healthz again after the clients left" % d.name)
    warnings = sum(1 for line in d.log().splitlines() if "http accept" in line)
    bound = int(servers * 2 * (time.time() - t0 + 5))  # at most one a second per server, doubled
    t.check(warnings <= bound, "%s: accept warnings are rate-limited: %d lines (bound %d)" % (d.name, warnings, bound))

    d.proc.send_signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(30)
    except subprocess.TimeoutExpired:
        rc = "still running after 30 s"
    t.eq(rc, 0, "%s: SIGTERM makes it exit 0" % d.name)
    d.proc = None


def main(t):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = API_CONNS + ADMIN_CONNS + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    stack = t.stack = Stack()
    stack.start("loader")

    # The api port: 4 workers, each a server of its own on SO_REUSEPORT.
    api = start_limited(stack, "api", {"FRESHET_API_WORKERS": "4"})
    wait_until(lambda: stack.get("/healthz")[0] == 200, 30, what="api /healthz")
    saturate(t, stack, api, stack.api_port, API_CONNS, 4)

    # An admin port (ingest's): the same server code on a daemon's loop.
    ingest = start_limited(stack, "ingest", {})
    wait_until(lambda: stack.admin("ingest", "/healthz")[0] == 200, 30, what="ingest admin /healthz")
    saturate(t, stack, ingest, ingest.admin_port, ADMIN_CONNS, 1)


TestRun("fd_exhaustion").run(main)
