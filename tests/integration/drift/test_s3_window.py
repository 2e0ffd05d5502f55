"""The drift job reads captured Parquet from a real S3 endpoint (moto's server, or INFERTAP_TEST_S3_ENDPOINT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infertap.drift.baseline import build_baseline
from infertap.drift.features import FeatureSpec
from infertap.drift.job import run_window
from infertap.logger.cli import main
from tests.integration.sinks.components import S3Endpoint, s3_bucket, s3_endpoint
from tests.unit.drift import capture

__all__ = ["s3_bucket", "s3_endpoint"]

pytestmark = pytest.mark.integration


def test_window_from_s3(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2)) + np.array([1.0, 0.0])
    capture.write(tmp_path, capture.table(x), "a.parquet")
    client = s3_endpoint.client()
    for f in tmp_path.rglob("*.parquet"):
        client.upload_file(str(f), s3_bucket, f"cap/{f.relative_to(tmp_path)}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_endpoint.region)
    specs = [FeatureSpec("a", "input.x", 0), FeatureSpec("b", "input.x", 1)]
    ref = rng.normal(size=(2000, 2))
    base = build_baseline({"a": ref[:, 0], "b": ref[:, 1]}, specs, model_name="m", model_version="1")
    for scheme in ("s3", "s3a"):  # s3a: what Spark users write for the same bucket
        out = run_window(base, f"{scheme}://{s3_bucket}/cap", endpoint=s3_endpoint.url, progress=False)
        assert out["window"]["records"] == 3000
        assert [f["drifted"] for f in out["features"]] == [True, False]


def test_unreadable_s3_exits_2(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_endpoint.region)
    ref = np.random.default_rng(1).normal(size=(500, 1))
    base = build_baseline({"a": ref[:, 0]}, [FeatureSpec("a", "input.x", 0)], model_name="m")
    bpath = base.save(tmp_path / "b.json")
    client = s3_endpoint.client()
    client.put_object(Bucket=s3_bucket, Key="cap/model=m/date=2026-11-18/hour=11/part-0.parquet", Body=b"PAR1 cut")
    for source in (f"s3://{s3_bucket}-missing/cap", f"s3://{s3_bucket}/cap"):
        rc = main(["drift", "run", source, "--baseline", str(bpath), "--s3-endpoint", s3_endpoint.url])
        err = capsys.readouterr().err
        assert rc == 2
        assert len(err.splitlines()) == 1, err
        assert err.startswith("infertap drift: error: ")
