"""Tables and figures; reads parquet only and never imports torch (tests/test_imports.py checks it)."""
