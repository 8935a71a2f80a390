"""Scripts that print figures: benchmarks of what ships (speed, memory, GUI stalls, quality), in this package;
experiment runners (multi-hour runs, checkpoints or data that are not bundled) in :mod:`bench.experiments`;
figure makers (the README's pictures) in :mod:`bench.figures`. See bench/README.md.

Every script runs from the repository root as ``python -m bench.NAME`` (``bench.experiments.NAME``,
``bench.figures.NAME``) and takes ``--quick``: tiny sizes, bundled or synthetic inputs, seconds on one CPU thread
(or one line saying why it skipped, exit status 0). The figures (numbers) are printed last. Nothing here is
asserted by the tests; tests/bench/test_smoke.py only checks that every script runs.
"""
