#!/usr/bin/env python3
"""Seeded generator of the hr pipeline's CSV drops (docs/pipelines.md).

Writes, without header, departments.csv (id,department), jobs.csv (id,job)
and hired_employees.csv (id,name,datetime,department_id,job_id) under
{out}/{departments,jobs,hired_employees}/ (default out:
{FRESHET_DATA_DIR}/inbound/hr). Line endings are CRLF in some files and LF
in others. Quirks: employee rows with an empty field, an unparsable
datetime, a non-numeric id, and foreign keys to departments or jobs that do
not exist (all rejected with a reason); names with commas (quoted) and
non-ASCII letters; hires over two years.

Python 3 standard library only. Same arguments, same bytes.
"""
import argparse
import csv
import datetime as dt
import io
import os
import random
import time

DEPARTMENTS = ("Accounting", "Business Development", "Engineering", "Human Resources", "Legal", "Marketing",
               "Product Management", "Research and Development", "Sales", "Services", "Support", "Training")
JOBS = ("Account Executive", "Analyst", "Data Engineer", "Developer", "Designer", "Manager", "Marketing Assistant",
        "Office Assistant", "Recruiter", "Sales Representative", "Software Engineer", "Staff Scientist",
        "Support Staff", "Technical Writer", "Web Developer", "Budget Analyst", "Chief Design Engineer")
FIRST = ("Ana", "Bruno", "Chloé", "Dmitri", "Eve", "Farid", "Grace", "Hiro", "Inés", "Jon", "Kemal", "Lena")
LAST = ("Smith", "García", "Müller", "Okafor", "Rossi", "Tanaka", "Nowak", "O'Brien", "Dupont", "Silva")


def default_out():
    return os.path.join(os.environ.get("FRESHET_DATA_DIR") or "./var", "inbound", "hr")


def write(path, rows, crlf):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
    for r in rows:
        w.writerow(r)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(buf.getvalue())
    os.rename(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=default_out())
    ap.add_argument("--employees", type=int, default=2000)
    ap.add_argument("--bad", type=int, default=30, help="invalid employee rows (default %(default)s)")
    ap.add_argument("--years", default="2023,2024", help="hire years, comma-separated")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--delay", type=float, default=0,
                    help="seconds to wait between writing departments/jobs and the employees that reference "
                         "them (a running stack loads them in that order)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    years = [int(y) for y in a.years.split(",")]
    deps = [(i + 1, d) for i, d in enumerate(DEPARTMENTS)]
    jobs = [(i + 1, j) for i, j in enumerate(JOBS)]
    # one more department whose name is taken: rejected (department is unique)
    write(os.path.join(a.out, "departments", "departments.csv"), deps + [(len(deps) + 1, deps[-1][1])], True)
    write(os.path.join(a.out, "jobs", "jobs.csv"), jobs, False)
    time.sleep(a.delay)
    dep_w = [rng.choice((1, 2, 4, 8, 16)) for _ in deps]  # uneven: some departments above the mean
    rows = []
    for i in range(a.employees):
        t = dt.datetime(rng.choice(years), 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            seconds=rng.randrange(365 * 86400))
        ts = t.strftime("%Y-%m-%dT%H:%M:%SZ") if rng.random() < 0.8 else t.strftime("%Y-%m-%dT%H:%M:%S")
        rows.append([str(i + 1), "%s %s" % (rng.choice(FIRST), rng.choice(LAST)) + (", Jr." if rng.random() < 0.02
                                                                                   else ""), ts,
                     str(rng.choices(deps, dep_w)[0][0]), str(rng.choice(jobs)[0])])
    for k in range(a.bad):
        r = rows[rng.randrange(len(rows))]
        kind = k % 6
        if kind == 0:
            r[1] = ""  # empty name
        elif kind == 1:
            r[2] = "2021-13-45T99:00:00Z"  # not a datetime
        elif kind == 2:
            r[3] = ""  # empty department
        elif kind == 3:
            r[3] = str(len(deps) + 50)  # dangling department
        elif kind == 4:
            r[4] = str(len(jobs) + 70)  # dangling job
        else:
            r[4] = "x%d" % k  # not a number
    half = len(rows) // 2
    write(os.path.join(a.out, "hired_employees", "hired_employees.csv"), rows[:half], True)
    write(os.path.join(a.out, "hired_employees", "hired_employees_2.csv"), rows[half:], False)
    print("%d departments, %d jobs, %d employees (%d altered) under %s" % (len(deps), len(jobs), len(rows), a.bad,
                                                                         a.out))


if __name__ == "__main__":
    main()
