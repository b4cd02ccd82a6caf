"""The ICRL report's instrument checks (wmrl.icrl.context_report): a model whose accuracy does not
rise with its context is labelled "has not learnt in context" and its claims are not judged; the
bandit positive control passes only when every criterion fixed in advance holds."""

from __future__ import annotations

import numpy as np
import polars as pl

from wmrl.icrl.context_report import LEARNT, NOT_LEARNT, context_gain, control_table, gate
from wmrl.icrl.evaluate import ROWS


def curve_rows(method: str, accuracy: np.ndarray, checkpoint: int = 100) -> pl.DataFrame:
    """Curve rows of one model: accuracy (tasks, lengths) at context lengths 0.., cross-entropy beside."""
    tasks, lengths = accuracy.shape
    records = [{"setting": setting, "method": method, "model_seed": 0, "task": task, "seed": 0, "step": length,
                "value": float(accuracy[task, length] if setting == "context_accuracy" else 1 - accuracy[task, length]),
                "checkpoint": checkpoint}
               for setting in ("context_accuracy", "context_cross_entropy") for task in range(tasks)
               for length in range(lengths)]
    return pl.DataFrame(records, schema=ROWS)


def test_a_flat_model_has_not_learnt_in_context_and_its_claims_are_not_judged():
    rng = np.random.default_rng(0)
    rising = np.clip(np.linspace(0.2, 0.9, 6)[None, :] + 0.05 * rng.standard_normal((20, 6)), 0, 1)
    flat = np.full((20, 6), 0.62) + 0.01 * rng.standard_normal((20, 6))
    rows = pl.concat([curve_rows("dpt_transformer", rising), curve_rows("dpt_ssm", flat),
                      curve_rows("dpt_ssm", rising, checkpoint=50)])  # an earlier snapshot does not count
    gains = context_gain(rows, ["dpt_transformer", "dpt_ssm"], 500, 0.95)
    assert gains["verdict"].to_list() == [LEARNT, NOT_LEARNT]
    assert gains["checkpoint"].to_list() == [100, 100]
    claims = pl.DataFrame({"claim": ["a", "b"], "method": ["dpt_transformer", "dpt_ssm"],
                           "verdict": ["consistent (no difference detected)", "refuted: DPT's regret is higher"]})
    assert gate(claims, gains)["verdict"].to_list() == ["consistent (no difference detected)",
                                                        f"not judged: {NOT_LEARNT}"]


def final(method: str, mean: float, lower: float, upper: float) -> dict:
    return {"method": method, "mean": mean, "lower": lower, "upper": upper, "mean [CI]": f"{mean}"}


def test_the_positive_control_passes_only_when_every_criterion_holds():
    gains = pl.DataFrame({"method": ["dpt_transformer"], "verdict": [LEARNT], "gain [CI]": ["+0.4"]})
    online = pl.DataFrame([final("dpt_transformer", 5.0, 4.7, 5.3), final("thompson", 4.9, 4.7, 5.1),
                           final("uniform", 17.0, 16.0, 18.0)])
    offline = pl.DataFrame([final("dpt_transformer", 0.05, 0.03, 0.07), final("lcb", 0.06, 0.04, 0.08)])
    passed = control_table(online, offline, gains, "dpt_transformer")
    assert passed["pass"].to_list() == [True, True, True, True, True]
    worse = online.with_columns(pl.when(pl.col("method") == "dpt_transformer").then(5.2).otherwise(pl.col("mean"))
                                .alias("mean"))
    assert control_table(worse, offline, gains, "dpt_transformer")["pass"].to_list() == [False, True, True, True,
                                                                                         False]
    flat = gains.with_columns(pl.lit(NOT_LEARNT).alias("verdict"))
    assert not control_table(online, offline, flat, "dpt_transformer")["pass"][-1]
