"""Every proof and approximation of the paper, checked numerically (Sections 3–5, Appendices A–H).

Each check is a function returning a :class:`ClaimResult` — claim (our words), paper reference,
left side, relation, right side, verdict (``holds``) with its tolerance, notes and supporting
numbers — so the theory notebook can print "claim — left side — right side — verdict".

Modules (one idea each):

=========================  ===================================================================
``linear_elbo``            Sec. 4.1 / App. B / Eq. (8): linearised ELBO vs Monte Carlo, error rate
``mutual_information``     Theorem 1 (A.1–A.2), Lemma 1, (F.6), (F.10)–(F.11)
``linear_vae``             Theorem 2 and Lemma 2 for the linear VAE (closed-form optimum)
``aggregate``              Lemma 3: (F.8) aggregated-posterior covariance, (F.9) determinant bound
``smoothness``             App. C: expected gap vs ELS (C.7)–(C.8); Table 1's ELS normalisation
``mle``                    App. G: MLE objectives via :mod:`vaebook.variance`; (G.2)
``decomposition``          App. H: Eq. (11) = Eq. (1) on a discrete model
``alternating``            Sec. 5.2 (i)/(ii): the alternating scheme (9a)/(9b) is monotone
=========================  ===================================================================

``ALL_CLAIMS`` maps a name to a zero-argument callable (small default sizes, seeded);
:func:`run_all` evaluates them and :func:`claims_table` renders the verdicts as a DataFrame.
``FINDINGS.md`` in this folder summarises the numbers and every place a claim does not hold as printed.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

from vaebook.theory import (aggregate, alternating, decomposition, linear_elbo, linear_vae, mle, mutual_information,
                            smoothness)
from vaebook.theory._record import ClaimResult, compare

MODULES = (linear_elbo, mutual_information, linear_vae, aggregate, smoothness, mle, decomposition, alternating)

ALL_CLAIMS: dict[str, Callable[[], ClaimResult]] = {}
for _m in MODULES:
    for _name, _fn in _m.CLAIMS.items():
        if _name in ALL_CLAIMS:
            raise RuntimeError(f"theory claim {_name!r} registered twice (in {_m.__name__})")
        ALL_CLAIMS[_name] = _fn


def run_all(names: Optional[Iterable[str]] = None, verbose: bool = False) -> list[ClaimResult]:
    """Evaluate the named claims (default: all) and return their records (adds ``seconds`` to ``details``)."""
    out = []
    for name in (ALL_CLAIMS if names is None else names):
        if name not in ALL_CLAIMS:
            raise KeyError(f"unknown theory claim {name!r}; choose from {sorted(ALL_CLAIMS)}")
        t = time.perf_counter()
        r = ALL_CLAIMS[name]()
        r.details["seconds"] = time.perf_counter() - t
        if verbose:
            print(f"{'✓' if r.holds else '✗'} {name} ({r.details['seconds']:.1f}s): {r.claim}")
        out.append(r)
    return out


def claims_table(results: Iterable[ClaimResult]):
    """One row per claim: name, ref, claim, lhs, relation, rhs, holds, tolerance, notes (pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame([r.row() for r in results])


__all__ = ["ALL_CLAIMS", "ClaimResult", "compare", "run_all", "claims_table", "MODULES"]
