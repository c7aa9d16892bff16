"""The per-μ markdown table of the 1RSB benchmarks (one_rsb_linear.py, one_rsb_softmax.py)."""

from __future__ import annotations

__all__ = ["table"]


def table(results, lead, lead_header, digits=4):
    """One row per RS point, per 1RSB saddle and per ground state (bold) of every repeat in
    ``results`` (records of :func:`theory.finetuning.one_rsb_ground.search`); ``lead(R)``: the
    first cells of repeat R (e.g. α′, λ′, key) under ``lead_header``."""
    head = lead_header + ["solution", "μ", "q", "q0", "m", "overlap", "overlap_inter", "φ", "e",
                          "Σ", "train", "test", "residual"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f = f".{digits}f"

    def row(R, name, mu, r, q0, inter, sigma, res):
        cells = lead(R) + [name, mu, f"{r['q']:{f}}", q0, f"{r['m']:{f}}", f"{r['overlap']:.3f}",
                           inter, f"{r['phi']:{f}}", f"{r['energy']:{f}}", sigma,
                           f"{r['train']:{f}}", f"{r['test_error']:{f}}", res]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")

    for R in results:
        rs = R["rs"]
        row(R, "RS" + ("" if R.get("rs_converged", True) else " (not converged)"), "0", rs,
            "= q", "—", "0", f"{rs['residual']:.1e}")
        for B in R["branches"]:
            for r in B["records"]:
                row(R, f"1RSB {B['name']}", f"{r['mu']:.3g}", r, f"{r['q0']:{f}}",
                    f"{r['overlap_inter']:.3f}", f"{r['sigma']:.2e}", f"{r['residual']:.1e}")
            g = B["ground"]
            if g is not None:
                row(R, f"**1RSB {B['name']} Σ = 0**", f"{g['mu']:.3g}", g, f"{g['q0']:{f}}",
                    f"{g['overlap_inter']:.3f}", "0", "—")
    return "\n".join(rows)
