"""e2e: data tests on models and models reading aggregate models
(docs/loader.md "Aggregate models", "Data tests") on tests/e2e/pipelines/mtests.

- batches of scores merge into the aggregate totals (points summed, plays
  counted) in their own transactions; the select model board reads totals and
  its cache board:{player} follows, and top (reading board) after it;
- a batch that makes a player's total negative fails board's test
  `expression(points >= 0)`: the refresh is not applied (board and the cache
  keep the last good values), and it is reported: a model.test_failed event
  naming the test and the key, the metric model_test_failures_total, an error
  log line; the aggregate itself has the batch (it is data, not a test), and
  top, which reads board, keeps its value too;
- the next batch of that player makes the test pass: the refresh is retried
  and applied."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "mtests")


def main(t):
    stack = t.stack = Stack(pipelines=PIPE).start()
    r = stack.redis.client()
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe("fr:events")
    events = []

    def poll_events():
        while True:
            m = sub.get_message(timeout=0.05)
            if not m:
                return events
            try:
                events.append(json.loads(m["data"]))
            except ValueError:
                pass

    def cached(player, cache="board"):
        h = r.hgetall("%s:%s" % (cache, player))
        return {k.decode(): v.decode() for k, v in h.items()}

    def failures():
        st, body = stack.admin("loader", "/metrics")
        if st != 200:
            return None
        m = re.search(r'^model_test_failures_total\{model="mtests\.board"\} (\d+)', body, re.M)
        return int(m.group(1)) if m else None

    # 1. two batches: the aggregate merges them, board and its cache follow
    stack.drop("mtests", "scores", "a.csv", "player,points\np1,5\np2,3\np1,2\n")
    wait_until(lambda: cached("p1").get("points") == "7" and cached("p2").get("points") == "3", 30,
               what="board:p1 = 7, board:p2 = 3")
    stack.drop("mtests", "scores", "b.csv", "player,points\np2,4\n")
    wait_until(lambda: cached("p2").get("points") == "7", 30, what="board:p2 = 7")
    t.eq(cached("p1"), {"player": "p1", "points": "7", "plays": "2"}, "board:p1 from the aggregate")
    t.eq(stack.pg.scalar("SELECT points FROM mtests.totals WHERE player = 'p2'"), 7, "totals p2 summed")
    t.eq(stack.pg.scalar("SELECT plays FROM mtests.totals WHERE player = 'p2'"), 2, "totals p2 counted")
    wait_until(lambda: cached("p2", "top").get("score") == "70", 30, what="top:p2 = 70 after board")
    t.eq(cached("p1", "top").get("score"), "70", "top:p1 follows board")
    t.eq(failures(), 0, "no data test failure yet")

    # 2. p1's total turns negative: board's test fails, nothing is applied
    stack.drop("mtests", "scores", "c.csv", "player,points\np1,-20\n")
    wait_until(lambda: (failures() or 0) >= 1, 30, what="model_test_failures_total >= 1")
    failed = [e for e in poll_events() if e.get("type") == "model.test_failed"]
    wait_until(lambda: [e for e in poll_events() if e.get("type") == "model.test_failed"], 10,
               what="a model.test_failed event")
    failed = [e for e in events if e.get("type") == "model.test_failed"]
    t.check(failed and failed[0].get("model") == "board" and failed[0].get("pipeline") == "mtests" and
            failed[0].get("tests") == ["expression(points >= 0)"] and failed[0].get("keys") == ["p1"] and
            failed[0].get("rows") == 1, "model.test_failed names the test and the key: %r" % failed[:1])
    t.eq(stack.pg.scalar("SELECT points FROM mtests.totals WHERE player = 'p1'"), -13,
         "the aggregate has the batch (-13)")
    t.eq(stack.pg.scalar("SELECT points FROM mtests.board WHERE player = 'p1'"), 7, "board keeps p1 = 7")
    t.eq(cached("p1").get("points"), "7", "the cache keeps serving p1 = 7")
    t.eq(cached("p1", "top").get("score"), "70", "top, reading board, keeps p1 = 70")
    log = stack.daemons["loader"].log()
    t.check("data tests failed" in log and "expression(points >= 0) for key p1" in log,
            "an error log line names the test and the key")

    # 3. the next batch of p1 makes the test pass: retried and applied
    stack.drop("mtests", "scores", "d.csv", "player,points\np1,30\n")
    wait_until(lambda: cached("p1").get("points") == "17", 30, what="board:p1 = 17 after the next batch")
    t.eq(stack.pg.scalar("SELECT points FROM mtests.board WHERE player = 'p1'"), 17, "board p1 = 17")
    wait_until(lambda: cached("p1", "top").get("score") == "170", 30, what="top:p1 = 170 after board")
    t.eq(failures(), 1, "one failure counted")
    sub.close()


if __name__ == "__main__":
    TestRun("e2e_model_tests").run(main)
