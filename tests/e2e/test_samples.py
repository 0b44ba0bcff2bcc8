"""e2e: deploy/load-samples, what the compose `sample` service runs.

Into a running stack's data folder (the compose volume stands in for it) it
writes each chosen pipeline's sample where that pipeline's sources watch, so
every file dataset loads rows; a pipeline without a generator (football) is
skipped; a second run writes nothing (the marker), SAMPLE_FORCE=1 writes again."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import SRC, Stack, TestRun, wait_until  # noqa: E402

SCRIPT = os.path.join(SRC, "deploy", "load-samples")
TABLES = ("players.events", "sessions.session_events", "hr.departments", "hr.jobs", "hr.hired_employees")


def load(stack, pipelines, **extra):
    env = dict(os.environ)
    env.update({"FRESHET_DATA_DIR": stack.data_dir, "FRESHET_PIPELINES_DIR": os.path.join(SRC, "pipelines"),
                "FRESHET_PIPELINES": pipelines, "SAMPLE_PLAYERS": "40", "SAMPLE_EVENTS": "2000"})
    env.update(extra)
    r = subprocess.run([SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    return r.returncode, r.stdout


def main(t):
    stack = t.stack = Stack(pipelines="players,sessions,hr", now="2024-06-17T12:00:00Z").start()
    rc, out = load(stack, "players,sessions,hr,football")
    t.eq(rc, 0, "load-samples exits 0: " + out)
    t.check("football: no sample generator" in out, "football is skipped: " + out)

    def counts():
        return {tb: stack.pg.scalar("SELECT count(*) FROM %s" % tb) for tb in TABLES}

    def all_loaded():
        try:
            return all(n > 0 for n in counts().values())
        except Exception:
            return False  # a table not migrated yet

    wait_until(all_loaded, 120, interval=0.5, what="every sample dataset has rows")
    t.check(all(n > 0 for n in counts().values()), "rows in every file dataset: %r" % counts())

    rc, out = load(stack, "players,sessions,hr")
    t.eq(rc, 0, "second run exits 0")
    t.eq(out.count("sample already written"), 3, "second run writes nothing: " + out)
    t.check("writing the sample" not in out, "no generator runs the second time: " + out)

    rc, out = load(stack, "sessions", SAMPLE_FORCE="1")
    t.eq(rc, 0, "SAMPLE_FORCE=1 exits 0")
    t.check("sessions: writing the sample" in out and "in 4 files" in out, "SAMPLE_FORCE=1 writes again: " + out)


if __name__ == "__main__":
    TestRun("test_samples").run(main)
