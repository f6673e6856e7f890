"""The findings check: which of the paper's claims a study reproduces (docs/findings.md).

Every claim of the paper that a study of this pipeline can test (Fig. 1, 2, 4, 8, 14, Tables 1-3 and
5-7; docs/paper.md §8-9) is one row of ``results/<study>/tables/findings.csv``: the statistic, its 95 % paired
bootstrap interval over questions, the paper's own value where it gives one, and a verdict by one
stated rule (``synergy.findings.verdict``). Reads parquet only; never imports torch.
"""

from synergy.findings.check import check_findings, paper_holds
from synergy.findings.settings import FindingsConfig
from synergy.findings.verdict import RULE_TEXT

__all__ = ["RULE_TEXT", "FindingsConfig", "check_findings", "paper_holds"]
