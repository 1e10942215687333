"""inkq's benchmark suite: ``python -m bench [--quick]`` (``make bench``).

It starts its own stack (embedded Redis, ``inkq api``, ``inkq worker``), renders
EMNIST test images as canvas PNGs once (cached in ``bench/.cache/``), measures
each target of the performance issue in one run on this machine, prints a table
and writes ``bench/results/latest.{json,md}`` and ``throughput.png``.

Modules: :mod:`bench.data` (images), :mod:`bench.stack` (the service under
test), :mod:`bench.tutorial` (the one-task-per-image comparison design),
:mod:`bench.measure` (one function per measurement), :mod:`bench.report`
(rows, targets, outputs), :mod:`bench.run` (the whole run in order).
"""

import os

# One BLAS thread per process, as inkq's worker runs (worker/celery_app.py):
# set before numpy is first imported by anything in the bench.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
