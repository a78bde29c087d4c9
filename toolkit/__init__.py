"""The `toolkit` command and the workstation-side pipeline: export, checks, verification, bundles, benchmarks."""

__version__ = "0.1.0"
