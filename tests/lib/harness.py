"""Test harness for freshet end-to-end tests.

Starts real redis-server and PostgreSQL processes on free loopback ports in
a temporary folder (PostgreSQL as `nobody` when run as root, since it refuses
root), and the freshet daemons with FRESHET_* variables pointing at them.
Everything started here is stopped by PID (or pg_ctl) at exit.
"""
import atexit
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("FRESHET_SRC_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FRESHET_BIN_DIR") or os.path.join(SRC, "build")
PGBIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
IS_ROOT = os.geteuid() == 0

_cleanups = []


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep stopping the rest
            print("cleanup failed: %r" % (e,), file=sys.stderr)


atexit.register(_run_cleanups)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    """Resident set size of a process in KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_until(fn, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # not ready yet
            last = e
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


def tmpdir(prefix="freshet-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    keep = os.environ.get("FRESHET_TEST_KEEP")
    if not keep:
        _cleanups.insert(0, lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def pipeline_copy(name, models="", files=None, replace=()):
    """A copy of pipelines/NAME in a temporary folder: `models` (YAML text, model entries) added at
    the end of its models:, each (old, new) of `replace` done in pipeline.yaml, and `files` ({path
    relative to the pipeline: text}) written. Returns the pipeline's folder."""
    d = os.path.join(tmpdir("freshet-%s-" % name), name)
    shutil.copytree(os.path.join(SRC, "pipelines", name), d)
    p = os.path.join(d, "pipeline.yaml")
    y = open(p).read()
    for old, new in replace:
        assert old in y, old
        y = y.replace(old, new)
    if models:
        assert "\ncaches:\n" in y
        y = y.replace("\ncaches:\n", models + "\ncaches:\n")
    open(p, "w").write(y)
    for rel, text in (files or {}).items():
        with open(os.path.join(d, rel), "w") as f:
            f.write(text)
    return d


class Redis:
    def __init__(self, base, appendonly=True):
        self.dir = os.path.join(base, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.proc = None
        self.url = "redis://127.0.0.1:%d/0" % self.port
        _cleanups.append(self.stop)

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--save", "", "--logfile", os.path.join(self.dir, "redis.log")])
        wait_until(lambda: self.client().ping(), 10, what="redis up")
        return self

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.proc = None

    def restart(self, down_s=0.5):
        self.stop()
        time.sleep(down_s)
        self.start()


def _free_cluster_port(taken):
    """A free port P whose cluster bus port P+10000 is free too."""
    while True:
        p = free_port()
        if p in taken or p + 10000 > 65535:
            continue
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            pass
        finally:
            b.close()


class RedisCluster:
    """A Redis Cluster on loopback: `masters` masters with one replica each
    (redis-server --cluster-enabled yes, redis-cli --cluster create), every
    node a child process stopped by PID. Nodes fail over after 2 s."""

    def __init__(self, base, masters=3):
        self.dir = os.path.join(base, "redis-cluster")
        os.makedirs(self.dir, exist_ok=True)
        self.nmasters = masters
        self.ports = []
        for _ in range(masters * 2):
            self.ports.append(_free_cluster_port(self.ports))
        self.procs = {}
        self.url = "redis+cluster://" + ",".join("127.0.0.1:%d" % p for p in self.ports)
        _cleanups.append(self.stop)

    def start_node(self, port):
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--cluster-enabled", "yes",
             "--cluster-config-file", os.path.join(d, "nodes.conf"), "--cluster-node-timeout", "2000",
             "--cluster-replica-validity-factor", "0", "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--logfile", os.path.join(d, "redis.log")])
        wait_until(lambda: self.node(port).ping(), 10, what="redis node %d up" % port)

    def start(self):
        for p in self.ports:
            self.start_node(p)
        out = subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % p for p in self.ports] +
                             ["--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise AssertionError("redis-cli --cluster create failed: %s %s" % (out.stdout, out.stderr))
        self.wait_ok()
        return self

    def wait_ok(self, timeout=30):
        """Every live node says cluster_state:ok, every slot has a master and
        each master has a replica in sync."""
        def ok():
            for p in self.live_ports():
                if "cluster_state:ok" not in self.cli(p, "CLUSTER", "INFO"):
                    return False
            ms = self.masters()
            if len(ms) != self.nmasters:
                return False
            for p in self.live_ports():
                info = self.node(p).info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
            return True
        wait_until(ok, timeout, interval=0.1, what="redis cluster ok")

    def node(self, port):
        import redis
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)

    def cli(self, port, *args):
        """redis-cli's raw answer (redis-py parses CLUSTER replies differently by version)."""
        return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True, text=True,
                              timeout=30).stdout

    def live_ports(self):
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def nodes(self):
        """CLUSTER NODES as dicts (port, id, master flag, slots), from a live node."""
        raw = self.cli(self.live_ports()[0], "CLUSTER", "NODES")
        out = []
        for line in raw.splitlines():
            f = line.split()
            if len(f) < 8:
                continue
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            out.append({"id": f[0], "port": port, "master": "master" in f[2] and "fail" not in f[2],
                        "slots": f[8:]})
        return out

    def masters(self):
        return sorted(n["port"] for n in self.nodes() if n["master"] and n["slots"] and
                      n["port"] in self.live_ports())

    def client(self):
        from redis.cluster import RedisCluster as PyCluster, ClusterNode
        return PyCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.live_ports()],
                         socket_timeout=10)

    def kill(self, port, sig=signal.SIGKILL):
        proc = self.procs.get(port)
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(20)

    def stop(self, sig=signal.SIGTERM):
        for p, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs = {}


class Postgres:
    def __init__(self, base):
        self.dir = os.path.join(base, "pg")
        os.makedirs(self.dir, exist_ok=True)
        if IS_ROOT:
            shutil.chown(self.dir, "nobody")
        self.port = free_port()
        self.data = os.path.join(self.dir, "data")
        self.url = "postgresql://freshet@127.0.0.1:%d/freshet" % self.port
        self.started = False
        _cleanups.append(self.stop)

    def _as_pg(self, args, **kw):
        if IS_ROOT:
            args = ["runuser", "-u", "nobody", "--"] + args
        return subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)

    def start(self):
        if not os.path.isdir(self.data):
            self._as_pg([PGBIN + "/initdb", "-D", self.data, "-U", "freshet", "--auth=trust", "-E", "UTF8",
                         "--locale=C.UTF-8"])
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c shared_buffers=128MB" % (self.port, self.dir))
        self._as_pg([PGBIN + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "pg.log"), "-w", "-t", "60",
                     "-o", opts, "start"])
        self.started = True
        subprocess.run([PGBIN + "/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "freshet", "freshet"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self):
        if self.started:
            self._as_pg([PGBIN + "/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])
            self.started = False

    def restart(self, down_s=0.5):
        self.stop()
        time.sleep(down_s)
        self.start()

    def connect(self):
        import psycopg2
        c = psycopg2.connect(self.url)
        c.autocommit = True
        return c

    def query(self, sql, params=None):
        c = self.connect()
        try:
            cur = c.cursor()
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def scalar(self, sql, params=None):
        rows = self.query(sql, params)
        return rows[0][0] if rows else None


class Replica(Postgres):
    """A streaming hot standby of `primary` on its own port (pg_basebackup -R),
    run like the primary (as nobody when root). pids() lists its processes, so
    a test can SIGSTOP the whole server; pause()/resume() stop and restart WAL
    replay (the server answers, but falls behind)."""

    def __init__(self, base, primary, name="replica"):
        self.primary = primary
        super().__init__(os.path.join(base, name))
        self.url = "postgresql://freshet@127.0.0.1:%d/freshet" % self.port

    def start(self):
        if not os.path.isdir(self.data):
            # -c fast: an immediate checkpoint (the default, spread, waits
            # most of a checkpoint interval on an idle primary)
            self._as_pg([PGBIN + "/pg_basebackup", "-D", self.data, "-R", "-X", "stream", "-c", "fast", "-h", "127.0.0.1",
                         "-p", str(self.primary.port), "-U", "freshet"])
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c hot_standby=on -c shared_buffers=128MB"
                % (self.port, self.dir))
        self._as_pg([PGBIN + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "pg.log"), "-w", "-t", "60",
                     "-o", opts, "start"])
        self.started = True
        return self

    def pids(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pm = int(f.readline())
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pm)], capture_output=True, text=True).stdout
        return [pm] + [int(x) for x in out.split()]

    def pause(self):
        self.query("SELECT pg_wal_replay_pause()")

    def resume(self):
        self.query("SELECT pg_wal_replay_resume()")


class Daemon:
    def __init__(self, name, env, logdir, args=()):
        self.name = name
        self.env = env
        self.args = list(args)
        self.log_path = os.path.join(logdir, "%s.log" % name)
        self.proc = None
        _cleanups.append(self.kill)

    def start(self, extra_env=None):
        env = dict(self.env)
        env.update(extra_env or {})
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "freshet-" + self.name)] + self.args, env=env,
                                     stdout=log, stderr=log, cwd=SRC)
        log.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM, and the daemon must drain and exit 0."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout)

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Stack:
    """Redis + PostgreSQL + the three daemons on one data dir."""

    def __init__(self, pipelines="players", now=None, redis_aof=True, extra_env=None, redis_cluster=False):
        self.base = tmpdir()
        self.data_dir = os.path.join(self.base, "var")
        os.makedirs(self.data_dir)
        if redis_cluster:  # 3 masters + 3 replicas; FRESHET_REDIS_URL=redis+cluster://...
            self.redis = RedisCluster(self.base).start()
        else:
            self.redis = Redis(self.base, appendonly=redis_aof).start()
        self.pg = Postgres(self.base).start()
        self.api_port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "FRESHET_REDIS_URL": self.redis.url,
            "FRESHET_DATABASE_URL": self.pg.url,
            "FRESHET_API_ADDR": "127.0.0.1:%d" % self.api_port,
            "FRESHET_PIPELINES": pipelines,
            "FRESHET_PIPELINES_DIR": os.path.join(SRC, "pipelines"),
            "FRESHET_DATA_DIR": self.data_dir,
            "FRESHET_LOG_LEVEL": "info",
            "FRESHET_CONSUMER": "test-loader",
        })
        if now:
            self.env["FRESHET_NOW"] = now
        self.env.update(extra_env or {})
        self.daemons = {}
        for name, port in (("ingest", free_port()), ("loader", free_port()), ("api", None)):
            env = dict(self.env)
            if port:
                env["FRESHET_ADMIN_ADDR"] = "127.0.0.1:%d" % port
            self.daemons[name] = Daemon(name, env, self.base)
            self.daemons[name].admin_port = port

    def add_loader(self, i):
        """Another loader (freshet-loader) on this stack: consumer
        test-loader-<i>, its own admin port and log folder; not started."""
        port = free_port()
        env = dict(self.env, FRESHET_CONSUMER="test-loader-%d" % i, FRESHET_ADMIN_ADDR="127.0.0.1:%d" % port)
        d = os.path.join(self.base, "loader%d" % i)
        os.makedirs(d, exist_ok=True)
        ld = Daemon("loader", env, d)
        ld.admin_port = port
        return ld

    def start(self, *names):
        for n in names or ("loader", "ingest", "api"):
            self.daemons[n].start()
        if not names or "api" in names:
            wait_until(lambda: self.get("/healthz")[0] == 200, 20, what="api /healthz")
        return self

    def __getitem__(self, name):
        return self.daemons[name]

    def inbound(self, pipeline, dataset):
        d = os.path.join(self.data_dir, "inbound", pipeline, dataset)
        os.makedirs(d, exist_ok=True)
        return d

    def drop(self, pipeline, dataset, name, content):
        """Writes a file atomically into the inbound directory."""
        d = self.inbound(pipeline, dataset)
        tmp = os.path.join(d, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.rename(tmp, os.path.join(d, name))

    def request(self, method, path, body=None, headers=None, port=None):
        c = http.client.HTTPConnection("127.0.0.1", port or self.api_port, timeout=30)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            ctype = r.getheader("Content-Type") or ""
            if "json" in ctype and data:
                return r.status, json.loads(data)
            return r.status, data.decode(errors="replace")
        finally:
            c.close()

    def get(self, path, port=None):
        return self.request("GET", path, port=port)

    def admin(self, daemon, path):
        return self.get(path, port=self.daemons[daemon].admin_port)

    def dump_logs(self):
        for n, d in self.daemons.items():
            print("----- %s log (tail) -----" % n, file=sys.stderr)
            print(d.log()[-6000:], file=sys.stderr)


class FakeUpstream:
    """tools/fake_upstream/fake_upstream.py on a free port: the football-data.org
    and Binance stand-ins. `url` is the base for FOOTBALL_API_URL / BINANCE_API_URL;
    control() posts to /_control (fault injection, clock), requests() reads /_requests,
    dump('football'|'crypto') runs --dump with the same seed/now."""

    SCRIPT = os.path.join(SRC, "tools", "fake_upstream", "fake_upstream.py")

    def __init__(self, seed=42, now=None, args=()):
        self.seed = seed
        self.now = now
        self.args = ["--seed", str(seed)] + (["--now", now] if now else []) + list(args)
        self.proc = None
        self.port = None
        _cleanups.append(self.stop)

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", self.SCRIPT, "--port", "0"] + self.args,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().strip())
        self.url = "http://127.0.0.1:%d" % self.port
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def _call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            return json.loads(r.read())
        finally:
            c.close()

    def control(self, **kw):
        return self._call("POST", "/_control", kw)

    def requests(self):
        return self._call("GET", "/_requests")

    def dump(self, kind, *extra):
        out = subprocess.check_output(["/usr/bin/python3", self.SCRIPT, "--dump", kind, "--seed", str(self.seed)] +
                                      (["--now", self.now] if self.now else []) + list(extra))
        return json.loads(out)


class TestRun:
    """Minimal runner: each check prints ok/FAIL; ends with 'N passed, N failed'."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.stack = None

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: %s" % what, file=sys.stderr)
        return cond

    def eq(self, got, want, what):
        return self.check(got == want, "%s: got %r, want %r" % (what, got, want))

    def finish(self):
        if self.failed and self.stack:
            self.stack.dump_logs()
        print("%s: %d passed, %d failed" % (self.name, self.passed, self.failed))
        sys.exit(1 if self.failed else 0)

    def run(self, fn):
        try:
            fn(self)
        except Exception:
            import traceback
            traceback.print_exc()
            self.failed += 1
        self.finish()
