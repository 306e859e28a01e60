"""The run engine: run configuration, cache, runner, speed measurements, manifest."""
