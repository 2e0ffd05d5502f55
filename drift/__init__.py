"""infertap's drift job: baselines, mergeable per-feature statistics, windowed drift and canary verdicts.

It reads the record schema defined in :mod:`logger.record`. Public entry points:

- :func:`drift.baseline.build_baseline` / :func:`drift.baseline.load_baseline` / :meth:`drift.baseline.Baseline.save`
- :func:`drift.job.run_window` (a windowed drift verdict over captured Parquet)
- :func:`drift.evaluate.evaluate` (drift verdict from a baseline and current per-feature summaries)
- :func:`drift.canary.compare` (canary-vs-stable verdict)
- :mod:`drift.outputs` (Evidently HTML report, Prometheus metrics, CloudEvent alert)

The command line is ``infertap drift {baseline,run,canary}`` (:mod:`drift.cli`).
"""
