"""Tables and figures; reads parquet only and never imports torch (DESIGN.md §4)."""
