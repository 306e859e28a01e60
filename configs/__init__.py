"""The YAML presets, installed as ``ood_bench.configs`` (data only; see ``ood_bench.engine.config``)."""
