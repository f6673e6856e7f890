"""Answer checking: one grader for difficulty sampling, the RL reward and evaluation.

Modules: ``extraction`` (the final answer of a response, the format rule), ``matching`` (numbers
and multiple choice without math-verify), ``text`` (normalisation both share), ``verifier`` (the
math-verify child process) and ``worker`` (the child's loop), ``grader`` (the ``Grader`` facade,
``grade``, ``grade_row``, ``reward``). Names with a leading underscore are private to the package.

Implements the answer checking of the paper's §2.2 (the RL reward is ``0.9 * accuracy +
0.1 * format``) and §2.4 (rule-based answer matching for evaluation). The paper additionally
used a Qwen2.5-VL-32B judge for answers the rules could not settle; that judge is a separate,
optional step and is not part of this module.

Extraction order (``extract_answer``):

1. Answer region: the text after the LAST ``</think>``. A ``<think>`` without a closing
   ``</think>`` (thinking was cut off) means there is no answer (status ``"no_answer"``). Without
   think tags the whole response is the region.
2. The LAST ``\\boxed{...}`` / ``\\fbox{...}`` in the region with balanced (nested) braces;
   ``\\boxed{\\boxed{5}}`` is unwrapped to ``5``; an empty or unclosed box is skipped.
3. Else the last ``<answer>...</answer>`` tag (the lmms-eval "reasoning" format).
4. Else the last "answer is X" / "Answer: X" / "final answer: X" / "correct option is X" pattern;
   X runs to the end of the sentence or line (or to ", which/so/because ..."); a trailing
   period, ``$`` and ``**`` are stripped.
5. Else, for multiple choice, one option letter standing alone in the region ("(B)", "B.",
   "B)", "Option B", a line holding only "B"; several different ones -> ``"ambiguous"``), or a
   region / last line equal to an option's text (normalised). Else, for every type, the region
   itself when it is one line of at most 40 characters (a bare number or expression).
6. Nothing -> ``(None, "no_answer")``.

Design choices:

1. One module, one rule set for all three uses, so a difficulty tag, a reward and a reported
   accuracy always agree on what "correct" means.
2. Multiple choice: the extracted string is mapped to exactly one letter (decorated letter,
   "Option B", ``\\text{B}``, an option's text, "B. blue"); several different letters are
   ``"ambiguous"`` and wrong; letters beyond the options are wrong; there is never a random
   fallback (lmms-eval's MMMU parser guesses; we do not).
3. Numbers (``integer`` / ``float``): units (the row's ``unit`` and common ones, %, degrees),
   ``$``, thousands commas, ``\\text{}``, thin spaces and a leading ``x =`` are stripped; the
   value is parsed exactly as a fraction (decimals, ``\\frac``/``\\dfrac``, ``a/b``, scientific
   notation, number words up to twenty). Integers compare exactly (3.0 == 3); floats compare
   after rounding both to ``precision`` decimals (half up) or, without a precision, with a
   relative tolerance of 1e-6 / agreement at 6 decimals (math-verify's rounding).
4. ``text``: normalised string equality (casefold, ``\\text{}`` removed, punctuation and spaces
   removed); math-verify only when either side looks mathematical.
5. ``expression`` (and every fallback): math-verify ``verify(parse(gold), parse(pred))`` with
   LaTeX + plain-expression extraction, gold first, strings wrapped in ``$...$`` when they carry
   no LaTeX environment. Cheap exact checks (normalised string equality, two plain numbers) run
   first.
6. Time limit: math-verify's own ``signal.alarm`` timeouts are disabled (they fail outside the
   main thread); its calls run in a persistent child process (``synergy.grading.worker``, JSON
   lines over pipes, started with ``subprocess.Popen`` so it also works inside daemonic
   multiprocessing workers). On the per-item deadline the child is killed and restarted lazily,
   and the item gets status ``"timeout"`` (wrong). Starting a child (about 1-2 s: importing
   sympy and the ANTLR parser) has its own limit and is not charged to the item's deadline; the
   child caps its address space (``SYNERGY_VERIFY_MAX_MEM_MB``, default 4096) and exits when its
   parent dies. Fast paths never touch the child.
7. Grading never raises for any response string: an exception gives status ``"error"`` (wrong).
   ``Grader.stats`` counts graded items, timeouts, errors, no-answers and ambiguous answers so
   callers can report them.
8. Thread and fork safe: a lock guards the child; a grader inherited through ``fork`` drops the
   parent's child process and starts its own.
"""

from __future__ import annotations

from synergy.grading.extraction import FORMAT_NOTE, check_format, extract_answer
from synergy.grading.grader import STATUSES, Grade, Grader, grade, grade_row, reward
from synergy.grading.grader import _global_grader as _global_grader

__all__ = ["FORMAT_NOTE", "STATUSES", "Grade", "Grader", "check_format", "extract_answer", "grade", "grade_row",
           "reward"]
