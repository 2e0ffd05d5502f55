"""``infertap demo``: two real predictors behind two sidecars, real traffic, captured Parquet, drift verdicts.

The folder is ``logger/demo/`` (the charter fixes the top-level folders) but it installs as ``infertap.demo``, a
package of its own above both :mod:`infertap.logger` and :mod:`infertap.drift` in the import graph: it may import
both, neither imports it.

The digits predictor's sidecar runs in forward mode (docs/forward-protocol.md): it ships raw frames to an
``infertap collector`` process, which decodes them and writes into the same data folder; the read-back checks its
records element by element like the others'.
"""
