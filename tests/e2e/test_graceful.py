#!/usr/bin/env python3
"""e2e: graceful SIGTERM of each daemon (docs/deploy.md "Stopping").

1. api: a slow client is in the middle of a large streamed answer (a list of
   several cursor pages, its socket buffer full) when the api gets SIGTERM:
   new connections are refused at once, the stream started before the signal
   completes whole (every row, valid JSON), and the api exits 0.
2. loader: SIGTERM while a batch's transaction is in flight (a statement
   trigger holds it in pg_sleep): the loader commits it and acknowledges the
   stream entry before exiting 0: nothing pending in the consumer group, the
   ledger shows the batch once, and a restarted loader loads nothing again.
3. ingest: SIGTERM while it holds an http_json source's lease mid-backfill
   (lease TTL 60 s): it exits 0 and the lease is gone at once (released, not
   expired).
"""
import http.client
import json
import os
import signal
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import FakeUpstream, Stack, TestRun, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RYW = os.path.join(HERE, "pipelines", "ryw")
REPLICAS = os.path.join(HERE, "pipelines", "replicas")
ROWS = 200000


def refused(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def api_drain(t, stack):
    c = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=60)
    c.sock = socket.create_connection(("127.0.0.1", stack.api_port))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # a slow reader: the server waits on it
    c.sock.settimeout(60)
    c.request("GET", "/ryw/big?n=%d" % ROWS)
    r = c.getresponse()
    t.eq(r.status, 200, "the streamed list starts")
    t.eq(r.getheader("Transfer-Encoding"), "chunked", "it is streamed in chunks")
    head = r.read(16384)
    stack["api"].proc.send_signal(signal.SIGTERM)
    wait_until(lambda: refused(stack.api_port), 10, what="the api refuses new connections after SIGTERM")
    t.check(stack["api"].alive(), "the api still runs: it is finishing the stream")
    body = head + r.read()
    c.close()
    try:
        rows = json.loads(body)
    except ValueError as e:
        rows = None
        t.check(False, "the stream is whole JSON (%s; %d bytes)" % (e, len(body)))
    if rows is not None:
        t.eq(len(rows), ROWS, "every row of the stream started before SIGTERM")
        t.eq(rows[-1]["i"] if rows else None, ROWS, "the last row")
    t.eq(stack["api"].proc.wait(30), 0, "the api exits 0 after the stream")


def stream_pending(rdb):
    """Entries delivered and not acknowledged, over every stream's groups."""
    n = 0
    for k in rdb.scan_iter(match="fr:stream:*"):
        for g in rdb.xinfo_groups(k):
            n += int(g["pending"])
    return n


def loader_drain(t, stack):
    pg = stack.pg
    pg.query("CREATE FUNCTION ryw.slow() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$")
    pg.query("CREATE TRIGGER slow AFTER INSERT ON ryw.notes FOR EACH STATEMENT EXECUTE FUNCTION ryw.slow()")
    n_ledger = pg.scalar("SELECT count(*) FROM freshet.batches")
    answer = []
    w = threading.Thread(target=lambda: answer.append(
        stack.request("POST", "/ryw/notes", [{"id": 500 + i, "body": "drain %d" % i} for i in range(3)])))
    w.start()
    wait_until(lambda: pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") >= 1, 30,
               what="the loader's transaction in flight (in the trigger's pg_sleep)")
    stack["loader"].proc.send_signal(signal.SIGTERM)
    t.eq(stack["loader"].proc.wait(60), 0, "the loader exits 0")
    w.join(60)
    t.eq(pg.scalar("SELECT count(*) FROM ryw.notes WHERE id >= 500"), 3, "the batch in flight was committed")
    t.eq(pg.scalar("SELECT count(*) FROM freshet.batches"), n_ledger + 1, "the ledger shows the batch once")
    rdb = stack.redis.client()
    t.eq(stream_pending(rdb), 0, "its stream entry was acknowledged (nothing pending)")
    t.check(answer and answer[0][0] in (201, 202), "the write was answered (%r)" % (answer,))
    pg.query("DROP TRIGGER slow ON ryw.notes")
    stack["loader"].start()
    wait_until(lambda: stack.admin("loader", "/readyz")[0] == 200, 30, what="the loader back")
    st, _ = stack.request("POST", "/ryw/notes", [{"id": 600, "body": "after"}])
    t.eq(st, 201, "a write after the restart loads")
    t.eq(pg.scalar("SELECT count(*) FROM freshet.batches"), n_ledger + 2,
         "the restarted loader loaded only the new batch (no redelivery)")
    t.eq(stream_pending(rdb), 0, "nothing pending after the restart")


def ingest_drain(t, stack, fake):
    rdb = stack.redis.client()
    ing = stack["ingest"]
    ing.env.update({"BINANCE_API_URL": fake.url, "FRESHET_LEASE_TTL_MS": "60000", "FRESHET_LEASE_RENEW_MS": "1000",
                    "FRESHET_NOW": "2024-06-28T00:30:00Z"})
    ing.start()
    leases = lambda: [k for k in rdb.scan_iter(match="fr:lease:src:*")]  # noqa: E731
    wait_until(lambda: leases() and stack.pg.scalar("SELECT count(*) FROM replicas.ohlc") > 0, 30,
               what="the ingest holds the klines lease mid-backfill")
    key = leases()[0]
    t.check(rdb.pttl(key) > 10000, "the lease would last many seconds more (pttl %r ms)" % rdb.pttl(key))
    ing.proc.send_signal(signal.SIGTERM)
    t.eq(ing.proc.wait(30), 0, "the ingest exits 0")
    t.eq(rdb.exists(key), 0, "its lease is gone right after it exits (released, not expired)")


def main(t):
    fake = FakeUpstream(seed=7, now="2024-06-28T00:30:00Z", args=["--fault", "slow", "--fault-delay-ms", "100"]).start()
    stack = t.stack = Stack(pipelines=RYW + "," + REPLICAS, now="2024-06-28T00:30:00Z",
                            extra_env={"FRESHET_API_WORKERS": "1", "BINANCE_API_URL": fake.url,
                                       "FRESHET_API_WRITE_WAIT_MS": "30000"})
    stack.start("loader", "api")
    wait_until(lambda: stack.pg.scalar("SELECT to_regclass('ryw.notes') IS NOT NULL"), 30, what="migrations")
    loader_drain(t, stack)
    ingest_drain(t, stack, fake)
    api_drain(t, stack)


if __name__ == "__main__":
    TestRun("test_graceful").run(main)
