"""benchmarks/study_times.py: job intervals and concurrency from a Snakemake log."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("study_times", Path(__file__).parents[1] / "benchmarks/study_times.py")
st = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(st)

LOG = """Building DAG of jobs...
[Thu Dec  3 17:00:00 2026]
localrule build:
    output: a
    jobid: 3
[Thu Dec  3 17:01:40 2026]
Finished jobid: 3 (Rule: build)
[Thu Dec  3 17:01:40 2026]
rule train:
    jobid: 1
[Thu Dec  3 17:01:40 2026]
rule evaluate:
    jobid: 2
[Thu Dec  3 17:02:00 2026]
Finished jobid: 2 (Rule: evaluate)
[Thu Dec  3 17:02:50 2026]
Finished jobid: 1 (Rule: train)
"""


def test_intervals_and_concurrency_of_a_log():
    jobs = st.job_intervals(LOG)
    assert [(r, (e - s).total_seconds()) for r, s, e in jobs] == [("build", 100.0), ("evaluate", 20.0), ("train", 70.0)]
    seconds, alone = st.concurrency(jobs)
    assert seconds.get(1) == 150.0 and seconds.get(2) == 20.0   # build alone 100 s, train alone 50 s after evaluate
    assert alone == [("build", 100.0), ("train", 50.0)]
    assert st.run_span(LOG) == 170.0
