"""The named suites of `python -m benchmarks`; each module has run(result, quick)."""
