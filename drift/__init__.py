"""infertap's drift job: baselines, mergeable per-feature statistics, windowed drift and canary verdicts.

It reads the record schema defined in :mod:`infertap.logger.record`. Public entry points:

- :func:`infertap.drift.baseline.build_baseline` / :func:`infertap.drift.baseline.load_baseline` /
  :meth:`infertap.drift.baseline.Baseline.save`
- :func:`infertap.drift.job.run_window` (a windowed drift verdict over captured Parquet)
- :func:`infertap.drift.evaluate.evaluate` (drift verdict from a baseline and current per-feature summaries)
- :func:`infertap.drift.canary.compare` (canary-vs-stable verdict)
- :mod:`infertap.drift.report` (HTML report of a verdict)
- :mod:`infertap.drift.outputs` (Prometheus metrics, CloudEvent alert)

The command line is ``infertap drift {baseline,run,canary}`` (:mod:`infertap.drift.cli`).
"""
