"""The lab's §1.7 claims and the project's targets, judged from a sweep's experiments table.

Kept apart from the sweep so the verdict rules can be read, and tested on hand-made tables,
without training anything. ``judge_claims`` decides; ``claims_markdown`` and ``write_claims``
write ``claims.md`` / ``claims.json`` of a sweep folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from vae_core.files import atomic_write_text

# the project's neg-ELBO targets at the lab's setup: latent size -> limit (nats per image)
NEG_ELBO_TARGETS = ((2, 152.0), (20, 104.0))


def _monotone(values: Sequence[float], increasing: bool) -> bool:
    pairs = zip(values[:-1], values[1:], strict=True)
    return all((b > a) if increasing else (b < a) for a, b in pairs)


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation (Pearson on average ranks; no scipy needed)."""
    rx = pd.Series(list(x), dtype=float).rank()
    ry = pd.Series(list(y), dtype=float).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")  # undefined for a constant sequence (and one value)
    s = rx.corr(ry)
    return float(s) if s == s else float("nan")


def _verdict(n_ok: int, n: int) -> str:
    if n == 0:
        return "not tested"
    return "supported" if n_ok == n else ("partly supported" if n_ok > 0 else "not supported")


def judge_claims(exp: pd.DataFrame) -> dict:
    """The lab's §1.7 claims and the project's targets, each with a verdict and its numbers."""
    exp = exp.dropna(subset=["recon"]).sort_values(["latent_dim", "beta"])
    claims: list[dict] = []
    if exp.empty:
        return {"claims": claims, "targets": []}
    betas = sorted(float(b) for b in exp["beta"].unique())
    latents = sorted(int(z) for z in exp["latent_dim"].unique())
    ref_beta = min(betas, key=lambda b: abs(math.log(b)) if b > 0 else 1e9)  # β = 1 if present
    ref_text = ("the lab's β" if ref_beta == 1 else "the β closest to the lab's β = 1")

    def val(z, b, col):
        row = exp[(exp["latent_dim"] == z) & (exp["beta"] == b)]
        return float(row[col].iloc[0]) if len(row) and col in row else float("nan")

    # claim 1: larger latent → better reconstruction
    per_beta = {f"{b:g}": {str(z): round(val(z, b, "recon"), 2) for z in latents} for b in betas}
    ok = {f"{b:g}": _monotone([val(z, b, "recon") for z in latents], increasing=False)
          for b in betas}
    ref_ok = ok[f"{ref_beta:g}"]
    others = [b for b, good in ok.items() if not good]
    claims.append({
        "id": "latent_size",
        "claim": "Increasing latent dimensionality (5, 10, 20) improves reconstruction quality.",
        "measure": "held-out reconstruction BCE (nats/image, one z sample) for latent sizes "
                   f"{latents}; lower is better; decided at β = {ref_beta:g}, {ref_text}",
        "verdict": ("not tested" if len(latents) < 2 else
                    "supported" if ref_ok and not others else
                    f"supported at β = {ref_beta:g}" if ref_ok else "not supported"),
        "numbers": {"recon_by_beta_then_latent": per_beta,
                    "strictly_decreasing_by_beta": ok},
        "note": ("" if not others else
                 f"not strictly decreasing at β = {', '.join(others)}: with a strong KL weight "
                 "extra dimensions stay unused (see active units)"),
    })
    # claim 2: lower β → better reconstruction
    per_lat = {str(z): {f"{b:g}": round(val(z, b, "recon"), 2) for b in betas} for z in latents}
    ok2 = {str(z): _monotone([val(z, b, "recon") for b in betas], increasing=True)
           for z in latents}
    claims.append({
        "id": "beta_reconstruction",
        "claim": "Lower β emphasizes reconstruction accuracy.",
        "measure": f"held-out reconstruction BCE for β in {betas} at each "
                   "latent size; supported where it rises strictly with β",
        "verdict": "not tested" if len(betas) < 2 else _verdict(sum(ok2.values()), len(ok2)),
        "numbers": {"recon_by_latent_then_beta": per_lat, "strictly_increasing_in_beta": ok2},
        "note": "",
    })
    # claim 3: higher β → smoother latent space, less detail
    lo, hi = betas[0], betas[-1]
    rows3 = {}
    n_both = 0
    not_smoother, not_less_detail = [], []
    for z in latents:
        r = [val(z, b, "roughness") for b in betas]
        d = [val(z, b, "recon_mean") for b in betas]
        gain = [val(z, b, "decoder_gain") for b in betas]
        smoother = r[-1] < r[0]
        less_detail = d[-1] > d[0]
        n_both += smoother and less_detail
        if not smoother:
            not_smoother.append(f"z = {z} ({r[0]:.3f} → {r[-1]:.3f})")
        if not less_detail:
            not_less_detail.append(f"z = {z}")
        rows3[str(z)] = {
            "roughness_by_beta": {f"{b:g}": round(v, 3) for b, v in zip(betas, r, strict=True)},
            "recon_from_mu_by_beta": {f"{b:g}": round(v, 2)
                                      for b, v in zip(betas, d, strict=True)},
            "decoder_gain_by_beta": {f"{b:g}": round(v, 3)
                                     for b, v in zip(betas, gain, strict=True)},
            "spearman_beta_roughness": round(_spearman(betas, r), 3),
            "smoother_at_high_beta": smoother, "less_detail_at_high_beta": less_detail}
    notes3 = []
    if not_smoother:
        notes3.append(f"roughness does not fall from β = {lo:g} to β = {hi:g} at "
                      + ", ".join(not_smoother))
    if not_less_detail:
        notes3.append("reconstruction from μ does not get worse with β at "
                      + ", ".join(not_less_detail))
    notes3.append("decoder gain (a Lipschitz estimate, shown for reference, not deciding) is in "
                  "the numbers")
    claims.append({
        "id": "beta_smoothness",
        "claim": "Higher β enforces smoother latent spaces but reduces detail.",
        "measure": ("smoothness proxy: interpolation roughness = largest / mean pixel-space step "
                    "along straight paths between the latent means of 200 random held-out pairs "
                    "(16 steps; 1 = the image changes at an even pace, larger = abrupt jumps); "
                    "detail: BCE of the reconstruction decoded from μ. Decided by comparing "
                    f"β = {hi:g} with β = {lo:g} at each latent size"),
        "verdict": "not tested" if len(betas) < 2 else _verdict(n_both, len(latents)),
        "numbers": rows3,
        "note": "; ".join(notes3),
    })
    # the project's targets (lab setup, β = 1)
    targets = []
    for z, limit in NEG_ELBO_TARGETS:
        v = val(z, ref_beta, "neg_elbo")
        if v == v:
            targets.append({"target": f"z = {z}, β = {ref_beta:g}: held-out neg-ELBO ≤ {limit:g}",
                            "value": round(v, 2), "met": bool(v <= limit)})
    for b in betas:
        wins = {str(z): [round(val(z, b, "knn_vae"), 4), round(val(z, b, "knn_pca"), 4)]
                for z in latents}
        targets.append({"target": f"β = {b:g}: latent kNN accuracy above PCA at every latent size",
                        "value": wins, "met": all(v[0] > v[1] for v in wins.values())})
    complete = len(exp) == len(betas) * len(latents)
    return {"claims": claims, "targets": targets, "complete_grid": complete,
            "latent_dims": [int(z) for z in latents], "betas": [float(b) for b in betas]}


def claims_markdown(claims: dict) -> str:
    """The verdicts as Markdown: one section per claim with the numbers that decide it."""
    lines = ["# The lab's claims (§1.7), tested", ""]
    if not claims.get("complete_grid", True):
        lines += ["**The sweep is incomplete: verdicts cover the finished configurations only.**",
                  ""]
    for c in claims.get("claims", []):
        lines += [f"## {c['claim']}", "", f"**Verdict: {c['verdict']}.**", "",
                  f"Measured by: {c['measure']}.", ""]
        if c["id"] == "latent_size":
            lines += _md_grid(c["numbers"]["recon_by_beta_then_latent"], "β \\ z",
                              "reconstruction BCE")
        elif c["id"] == "beta_reconstruction":
            lines += _md_grid(c["numbers"]["recon_by_latent_then_beta"], "z \\ β",
                              "reconstruction BCE")
        else:
            lines += _md_grid({z: v["roughness_by_beta"] for z, v in c["numbers"].items()},
                              "z \\ β", "interpolation roughness")
            lines += _md_grid({z: v["recon_from_mu_by_beta"] for z, v in c["numbers"].items()},
                              "z \\ β", "BCE of the reconstruction from μ")
            lines += _md_grid({z: v["decoder_gain_by_beta"] for z, v in c["numbers"].items()},
                              "z \\ β", "decoder gain (reference only)")
        if c.get("note"):
            lines += [f"Note: {c['note']}.", ""]
    lines += ["## Targets", "", "| target | value | met |", "|---|---|---|"]
    for t in claims.get("targets", []):
        value = t["value"]
        if isinstance(value, dict):
            value = "; ".join(f"z={z}: {v[0]:.3f} vs PCA {v[1]:.3f}" for z, v in value.items())
        lines.append(f"| {t['target']} | {value} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _md_grid(table: dict, corner: str, what: str) -> list[str]:
    cols = list(next(iter(table.values())).keys())
    out = [f"{what}:", "", f"| {corner} | " + " | ".join(cols) + " |",
           "|---|" + "---|" * len(cols)]
    for r, vals in table.items():
        out.append(f"| {r} | " + " | ".join(f"{vals[c]:g}" for c in cols) + " |")
    return out + [""]


def write_claims(claims: dict, out_dir: Path) -> None:
    """``claims.json`` (what the report reads) and ``claims.md`` (for people)."""
    atomic_write_text(out_dir / "claims.json", json.dumps(claims, indent=2) + "\n")
    atomic_write_text(out_dir / "claims.md", claims_markdown(claims))
