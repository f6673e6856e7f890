"""The scorecard of an outside checkpoint (docs/scorecard.md): so far, the checks before any job runs."""
