"""The effect of each ablation, seed by seed: a variant's accuracy minus its reference variant's.

An ablation changes one setting of the faithful main run; its reference variant *is* that main run under the
ablation's label (an alias, `alias_of` in its run file). Seed s of a variant uses the seed of seed s of the main
run (its initialisation and data order, wherever the change leaves them alike), so the effect is paired by
seed (variant seed s minus reference seed s), over the seeds both have: with three seeds and run-to-run
spreads of several points (Results page) the difference of two means alone says little. Head-B pixel accuracy
in points, under the rules of the ablation tables (iicrepro.report.frame.RULES).
"""
from __future__ import annotations

import pandas as pd

from iicrepro.report.frame import preferred_profile, seed_difference
from iicrepro.report.load import experiments, labels, manifest_cells, paper_iic
from iicrepro.report.tables import mean_sd, to_md

EFFECT_RULES = {"paper": "paper protocol", "last": "label-free (last)", "lowest_loss": "label-free (lowest loss)"}
QUOTED = "the paper's effect (quoted, on the dataset it stands in for)"


def describe(diffs: pd.Series) -> str:
    """"+1.2 ± 0.8, higher in 2 of 3 seeds" (sample sd when n > 1); "+2.7, one seed (no spread)" for a single
    pair, which shows no direction a reader could weigh against seed noise; "—" without a common seed."""
    n = len(diffs)
    if not n:
        return "—"
    if n == 1:
        return f"{mean_sd(diffs, signed=True)}, one seed (no spread)"
    return f"{mean_sd(diffs, signed=True)}, higher in {int((diffs > 0).sum())} of {n} seeds"


def quoted_effect(reference: dict, *, dataset: str, variant: str) -> str | None:
    """The paper's own effect of a lambda_B variant on the paper dataset `dataset` stands in for: its
    lambda_B ablation number (reference file, `lambda_ablation`) minus its Table-4 number, in points; "63.9 /
    63.4" (two quoted runs) gives two effects. None where the paper has no such number."""
    analogue = next((r.get("analogue_of") for r in experiments(reference) if r["dataset"] == dataset), None)
    rows = (reference.get("lambda_ablation") or {}).get("rows") or []
    quoted = next((r for r in rows if r["dataset"] == analogue and variant == f"lambda={r['lambda_b']}"), None)
    main = paper_iic(reference).get(analogue)
    if quoted is None or main is None:
        return None
    values = [float(v) for v in str(quoted["value"]).split("/")]
    return " / ".join(f"{v - float(main):+.1f}" for v in values) + f" ({labels(reference).get(analogue, analogue)})"


def ablation_effects(frame: pd.DataFrame, group: str, *, reference: dict, manifest: list[dict] | None = None) -> str:
    """A row per (dataset, variant other than the reference): "variant − reference" under each rule.

    The reference variant of a dataset is the one whose runs are aliases of main runs; a dataset without
    exactly one such variant has no rows. Both sides come from the variant's preferred profile (a cpu-scale
    variant is never paired with a full-scale reference). Rows in manifest order (study.yaml), where given.
    Empty string when no row has a common seed."""
    ok = frame[(frame["group"] == group) & (frame["status"] == "ok") & frame["acc"].notna() & frame["selected"]
               & frame["rule"].isin(list(EFFECT_RULES))]
    rows = []
    for dataset, runs in ok.groupby("dataset", sort=False):
        references = runs.loc[runs["alias_of"].notna(), "variant"].unique()
        if len(references) != 1:
            continue
        ref = references[0]
        order = [v for ds, v in manifest_cells(manifest or [], group) if ds == dataset]
        variants = sorted(runs["variant"].unique(), key=lambda v: order.index(v) if v in order else len(order))
        for variant in (v for v in variants if v != ref):
            profile = preferred_profile(runs.loc[runs["variant"] == variant, "profile"])
            mine = runs[(runs["variant"] == variant) & (runs["profile"] == profile)]
            base = runs[(runs["variant"] == ref) & (runs["profile"] == profile)]
            cells = {label: describe(100 * seed_difference(mine[mine["rule"] == rule], base[base["rule"] == rule]))
                     for rule, label in EFFECT_RULES.items()}
            if all(cell == "—" for cell in cells.values()):
                continue
            quoted = quoted_effect(reference, dataset=dataset, variant=variant)
            rows.append({"dataset": labels(reference).get(dataset, dataset), "effect": f"{variant} − {ref}",
                         **cells, **({QUOTED: quoted} if quoted else {})})
    if not rows:
        return ""
    return ("\nThe effect, paired by seed (the variant's seed s minus the reference's seed s, trained with the same "
            "seed; points of head-B accuracy, mean ± sd over the seeds both have):\n\n"
            + to_md(pd.DataFrame(rows).fillna("—")))
