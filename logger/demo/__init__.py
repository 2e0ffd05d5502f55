"""``infertap demo``: two real predictors behind two sidecars, real traffic, captured Parquet, a summary."""
