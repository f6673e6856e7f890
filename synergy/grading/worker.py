"""Child-process loop that runs math-verify for :mod:`synergy.grading`.

Started by ``synergy.grading.Grader`` (``verifier.VerifierProcess``) as ``python -m
synergy.grading.worker``; it imports nothing from synergy but this package's light parents. It speaks
newline-delimited JSON over stdin/stdout, one request at a time:

* on start it writes ``{"ready": true}`` once math-verify is imported and warmed up (or
  ``{"ready": false, "error": "..."}`` and exits if the import fails);
* request  ``{"id": int, "gold": str, "pred": str, "float_rounding": int}``
* response ``{"id": int, "ok": true, "result": bool, "value": str | null, "parsed": bool}`` where
  ``result`` is ``verify(parse(gold), parse(pred))`` (gold first), ``value`` is the prediction's
  numeric value (``"p/q"`` for rationals, else a 30-digit decimal) when the prediction parses to a
  real number, and ``parsed`` says whether the prediction parsed to anything; or
  ``{"id": int, "ok": false, "error": "..."}`` when math-verify raised.

math-verify's own ``signal.alarm`` timeouts are disabled here (``parsing_timeout=None``,
``timeout_seconds=None``): the parent enforces the per-item deadline by killing this process,
which works from threads and daemonic pool workers where signals cannot be used.
"""

from __future__ import annotations

import json
import logging
import os
import sys


def _numeric_value(expr) -> str | None:
    """The real numeric value of a parsed sympy object, as text, or None."""
    import sympy

    if not isinstance(expr, sympy.Basic) or not getattr(expr, "is_number", False):
        return None
    if expr.is_Rational:
        return f"{expr.p}/{expr.q}"
    val = sympy.N(expr, 30)
    if not val.is_real or not val.is_finite:
        return None
    if val.is_Rational:
        return f"{val.p}/{val.q}"
    if not isinstance(val, sympy.Float):
        return None
    return str(val)


def _limit_memory() -> None:
    """Cap the address space (SYNERGY_VERIFY_MAX_MEM_MB, default 4096; 0 = no cap) so a runaway
    sympy computation fails with MemoryError instead of starving the machine."""
    try:
        import resource

        mb = int(os.environ.get("SYNERGY_VERIFY_MAX_MEM_MB", "4096"))
        if mb > 0:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            cap = mb * 1024 * 1024
            if hard != resource.RLIM_INFINITY:
                cap = min(cap, hard)
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except Exception:
        pass


def _watch_parent() -> None:
    """Exit when the parent process goes away, even in the middle of a long computation."""
    import threading
    import time

    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=loop, daemon=True).start()


def main() -> int:
    _limit_memory()
    _watch_parent()
    # Keep the protocol channel clean: anything a library prints goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        config = [LatexExtractionConfig(), ExprExtractionConfig()]
        parse("$\\frac{1}{2}$", config, parsing_timeout=None)  # load the ANTLR parser now
    except Exception as exc:  # pragma: no cover - only when the environment is broken
        send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    send({"ready": True})

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        rid = None
        try:
            req = json.loads(line)
            rid = req.get("id")
            gold = parse(req["gold"], config, parsing_timeout=None, raise_on_error=False)
            pred = parse(req["pred"], config, parsing_timeout=None, raise_on_error=False)
            result = bool(
                gold
                and pred
                and verify(
                    gold,
                    pred,
                    float_rounding=int(req.get("float_rounding", 6)),
                    timeout_seconds=None,
                    raise_on_error=False,
                )
            )
            value = None
            if pred:
                try:
                    value = _numeric_value(pred[0])
                except Exception:
                    value = None
            send({"id": rid, "ok": True, "result": result, "value": value, "parsed": bool(pred)})
        except Exception as exc:
            send({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:500]}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
