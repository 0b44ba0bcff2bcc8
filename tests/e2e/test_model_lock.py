"""e2e: a model's refresh lock (docs/scaling.md "Many loaders"). Two loaders
in group `loader` on the players pipeline. Refreshes of one model hold a
session advisory lock on it (pg_try_advisory_lock of
hashtextextended('freshet.model:players.user_panel', 0)) until their cache
writes are done, so refreshes from several loaders never overlap and a
cache write never goes back in time. Here the test holds that lock itself:
a new player's events load (ledger) but neither loader refreshes the model
nor writes its cache while the lock is held (no model.refreshed for
user_panel, no row, no key); once released, the row and the cache key
appear, equal to the reference. A cache resync (a loader restart) waits for
the lock the same way. Then every daemon exits 0."""
import datetime as dt
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from harness import Stack, TestRun, wait_until  # noqa: E402
import players_ref  # noqa: E402
from test_players import make_events, to_csv  # noqa: E402

NOW = dt.datetime(2024, 6, 17, 12, 0, 0, tzinfo=dt.timezone.utc)
LOCK = "SELECT pg_advisory_lock(hashtextextended('freshet.model:players.user_panel', 0))"
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('freshet.model:players.user_panel', 0))"
QUIET_S = 2.0  # a refresh follows a load within ~coalesce_ms (50 ms): none may come while locked


class Events:
    def __init__(self, client):
        self.msgs = []
        self.ps = client.pubsub(ignore_subscribe_messages=True)
        self.ps.subscribe("fr:events")
        self.stop = False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop:
            m = self.ps.get_message(timeout=0.1)
            if m and m.get("type") == "message":
                self.msgs.append((time.time(), json.loads(m["data"])))

    def close(self):
        self.stop = True
        self.th.join(5)
        self.ps.close()


def main(t):
    stack = t.stack = Stack(pipelines="players", now="2024-06-17T12:00:00Z")
    second = stack.add_loader(2)
    second.start()
    stack.start()
    events = make_events(seed=5, n_players=40)
    stack.drop("players", "events", "a.csv", to_csv(events))
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.user_panel") == 40, 60, what="40 players")
    r = stack.redis.client()
    wait_until(lambda: r.exists("user_panel:p0039"), 30, what="cache of the first file")

    holder = stack.pg.connect()
    holder.cursor().execute(LOCK)
    ev = Events(r)
    newp = [e for e in make_events(seed=6, n_players=1)]
    for e in newp:
        e["player_id"] = "pnew"
    t_drop = time.time()
    stack.drop("players", "events", "b.csv", to_csv(newp))
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id = 'pnew'") == len(newp),
               30, what="the new player's events loaded")
    time.sleep(QUIET_S)  # the window in which an unlocked loader would have refreshed (bounded negative check)
    refreshed = [m for ts, m in ev.msgs if m.get("type") == "model.refreshed" and m.get("model") == "user_panel"
                 and ts >= t_drop]
    t.eq(refreshed, [], "no user_panel refresh while another session holds its lock")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.user_panel WHERE player_id = 'pnew'"), 0,
         "no model row for the new player while locked")
    t.check(not r.exists("user_panel:pnew"), "no cache key for the new player while locked")

    # a cache resync waits for the lock too: restart one loader while it is held
    second.stop()
    mark = len(second.log())
    second.start()
    time.sleep(QUIET_S)
    t.check("cache user_panel resynced" not in second.log()[mark:], "no resync of user_panel while locked")

    holder.cursor().execute(UNLOCK)
    holder.close()
    want = players_ref.panel(newp, NOW)["pnew"]
    wait_until(lambda: r.exists("user_panel:pnew"), 30, what="the new player's cache key after the release")
    got = {k.decode(): v.decode() for k, v in r.hgetall("user_panel:pnew").items()}
    t.eq(got.get("country"), want["country"], "cache country equals the reference")
    st, body = stack.get("/player/attribute?player_id=pnew&attribute_name=country")
    t.eq((st, body.get("country") if isinstance(body, dict) else body), (200, want["country"]), "api answers it")
    wait_until(lambda: "cache user_panel resynced" in second.log()[mark:], 30, what="the restarted loader's resync")
    ev.close()
    for name in ("ingest", "api", "loader"):
        t.eq(stack[name].stop(), 0, "%s exits 0 on SIGTERM" % name)
    t.eq(second.stop(), 0, "loader 2 exits 0 on SIGTERM")


if __name__ == "__main__":
    TestRun("e2e_model_lock").run(main)
