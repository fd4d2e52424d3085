"""Why the served failure probability is what it is: additive terms per input channel.

The served probability is ``sigmoid(b + sum_m c_m * logit_m)`` (:class:`~prognos.models.ensemble.
LogitStack`), affine in each member's log-odds. So each member's additive explanation of its own
log-odds, scaled by its slope ``c_m``, adds up to the *served* log-odds: XGBoost's exact TreeSHAP
per feature, the sequence network's DeepLift per channel (Integrated Gradients for the LSTM
variant; :mod:`~prognos.models.attribution`). Features are then grouped by the channel they are
computed from (``sensor_7__mean_10`` -> ``sensor_7``), so both members speak of the same inputs in
one output space; features of no channel (``age``, ``regime``) stay alone.

Additivity: ``base + sum(contributions) == logit == log-odds of the served probability`` for every
row, to float rounding. Each member's terms are closed on the log-odds the service used: what the
network's terms miss of completeness (float32 rounding for DeepLift, ~1e-6; the quadrature error
for IG) and the float32 rounding of XGBoost's probability are shared out over that member's terms
in proportion to their size. At a saturated member probability (within 1e-7 of 0 or
1) the service clips the member's log-odds (``member_logits``), and that clip is shared out the same
way: the terms then explain the clipped log-odds, which is what was served.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prognos.models.attribution import close_gap
from prognos.models.base import ModelInput
from prognos.models.bundle import ModelBundle
from prognos.models.ensemble import member_logits

__all__ = ["OUTPUT", "Contribution", "Explainer", "Explanation", "Terms", "explain"]

# What every explanation explains (said in the API and the logged rows).
OUTPUT = "log_odds of the served failure probability"


@dataclass(frozen=True)
class Contribution:
    """One input's share of the served log-odds.

    ``feature``: a channel (sensor or ``health_index``: every feature computed from it), a
    feature of no channel (``age``, ``regime``), or a member without per-input attribution.
    ``value``: the channel's latest normalised value (the feature itself for ``age``...), NaN if
    unknown. ``members``: the same contribution split by member (slope included).
    """

    feature: str
    value: float
    contribution: float
    members: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Explanation:
    """Largest-magnitude-first contributions to the served log-odds of one row.

    ``base + sum(contributions) + other == logit``; ``base = b + sum_m c_m * base_m`` (the
    members' outputs at their reference: TreeSHAP's expected margin, the network's nominal
    sequence);
    ``members``: each explained member's slope ``c_m``; ``other``: contributions left out.
    """

    base: float
    logit: float
    contributions: list[Contribution]
    other: float
    members: dict[str, float]
    output: str = OUTPUT

    def top(self, k: int) -> list[Contribution]:
        return self.contributions[:k]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a value that is missing (NaN) is written as null."""
        return {
            "output": self.output,
            "base": self.base,
            "logit": self.logit,
            "other": self.other,
            "members": dict(self.members),
            "contributions": [
                {
                    "feature": c.feature,
                    "value": c.value if math.isfinite(c.value) else None,
                    "contribution": c.contribution,
                    "members": dict(c.members),
                }
                for c in self.contributions
            ],
        }


@dataclass(frozen=True)
class Terms:
    """One member's attribution before it is closed on the served log-odds: ``groups`` (rows,
    its groups: every input for TreeSHAP, the channels for the network) and ``base`` (rows,)."""

    groups: NDArray[np.float64]
    base: NDArray[np.float64]


def channel_of(feature: str) -> str:
    """The input a feature is computed from: the part of its name before ``__``."""
    return feature.split("__", 1)[0]


class Explainer:
    """Explains a bundle's served failure probability (built once, reused for every call).

    ``attribute``: members to attribute per input (default: every member that can); any other
    member with a slope above 0 enters as one term named after it. Members with slope 0 do not
    run at all.
    """

    def __init__(self, bundle: ModelBundle, *, attribute: Collection[str] | None = None) -> None:
        self.bundle = bundle
        stack = bundle.post.stack
        self.slopes = {m: float(c) for m, c in stack.coef_.items() if c > 0}
        self.intercept = float(stack.intercept_)
        self.channels = list(bundle.pipeline.layout_.channels)
        names = list(bundle.pipeline.layout_.names)
        self.feature_names = names
        groups = list(dict.fromkeys([*self.channels, *map(channel_of, names)]))
        self.attributed: dict[str, str] = {}  # member -> "shap" or "channels"
        for m in self.slopes:
            member = bundle.members[m]
            if attribute is not None and m not in attribute:
                continue
            if hasattr(member, "contributions"):
                self.attributed[m] = "shap"
            elif hasattr(member, "attributions"):
                self.attributed[m] = "channels"
        self._inputs = len(groups)  # channels and features of no channel; members after them
        groups += [m for m in self.slopes if m not in self.attributed]
        self.groups = groups
        index = {g: i for i, g in enumerate(groups)}
        # TreeSHAP columns -> groups: a one-hot (features, groups) matrix, summed by one matmul.
        self._feature_groups = np.zeros((len(names), len(groups)))
        self._feature_groups[np.arange(len(names)), [index[channel_of(n)] for n in names]] = 1.0
        self._channel_columns = np.array([index[c] for c in self.channels])
        # Where each group's value comes from: <channel>__value, the feature itself, or nowhere.
        position = {n: j for j, n in enumerate(names)}
        self._value_columns = np.array(
            [position.get(f"{g}__value", position.get(g, -1)) for g in groups]
        )

    def explain(
        self,
        X: ModelInput,
        *,
        keep: int | None = None,
        proba: Mapping[str, NDArray[np.float64]] | None = None,
    ) -> list[Explanation]:
        """One explanation per row of ``X``; ``keep``: at most that many contributions each,
        the rest summed into ``other`` (None: all of them). ``proba``: the members' failure
        probabilities of ``X`` when the caller already has them (else each member predicts)."""
        if proba is None:
            proba = {m: self.bundle.members[m].predict_proba(X) for m in self.slopes}
        return self.finish(X, self.attribute(X), proba, keep=keep)

    def attribute(self, X: ModelInput) -> dict[str, Terms]:
        """Each attributed member's raw terms per group and its base, not yet closed on the
        served log-odds: the costly part (TreeSHAP, DeepLift), which needs no prediction, so
        the service runs it beside the ensemble and :meth:`finish` closes it on the ensemble's
        own member outputs (one prediction per member and batch, not two)."""
        if list(X.feature_names) != self.feature_names:
            raise ValueError("X's features are not the bundle's pipeline features")
        raw: dict[str, Terms] = {}
        for m, kind in self.attributed.items():
            member: Any = self.bundle.members[m]
            if kind == "shap":
                shap = member.contributions(X)
                groups = shap[:, :-1] @ self._feature_groups[:, : self._inputs]
                raw[m] = Terms(groups, np.asarray(shap[:, -1], dtype=np.float64))
            else:
                attributions, member_base = member.attributions(X)
                raw[m] = Terms(attributions, np.asarray(member_base, dtype=np.float64))
        return raw

    def finish(
        self,
        X: ModelInput,
        raw: Mapping[str, Terms],
        proba: Mapping[str, NDArray[np.float64]],
        *,
        keep: int | None = None,
    ) -> list[Explanation]:
        """The explanations of ``X`` from :meth:`attribute`'s terms, each member's closed on
        its served log-odds (from ``proba``, the members' probabilities of ``X``)."""
        rows = len(X)
        total = np.zeros((rows, len(self.groups)))
        base = np.full(rows, self.intercept)
        by_member: dict[str, NDArray[np.float64]] = {}
        used = {m: proba[m] for m in self.slopes}
        served = member_logits(used)  # each member's log-odds exactly as the stack reads them
        for m, slope in self.slopes.items():
            terms = np.zeros((rows, len(self.groups)))
            kind = self.attributed.get(m)
            if kind is None:  # one term: the member's whole log-odds
                terms[:, self.groups.index(m)] = served[m]
                member_base = np.zeros(rows)
            else:
                columns = slice(0, self._inputs) if kind == "shap" else self._channel_columns
                member_base = raw[m].base
                terms[:, columns] = close_gap(raw[m].groups, served[m] - member_base)
            by_member[m] = slope * terms
            total += by_member[m]
            base += slope * member_base
        logit = self.bundle.post.stack.decision_function(used)
        return [self._row(i, X, total, base, logit, by_member, keep) for i in range(rows)]

    def _row(
        self,
        i: int,
        X: ModelInput,
        total: NDArray[np.float64],
        base: NDArray[np.float64],
        logit: NDArray[np.float64],
        by_member: dict[str, NDArray[np.float64]],
        keep: int | None,
    ) -> Explanation:
        row = total[i]
        order = np.argsort(-np.abs(row), kind="stable")
        kept = order if keep is None else order[:keep]
        features = X.features[i]
        contributions = []
        for g in kept:
            column = self._value_columns[g]
            value = float(features[column]) if column >= 0 else math.nan
            contributions.append(
                Contribution(
                    feature=self.groups[g],
                    value=value if math.isfinite(value) else math.nan,
                    contribution=float(row[g]),
                    members={m: float(t[i, g]) for m, t in by_member.items()},
                )
            )
        return Explanation(
            base=float(base[i]),
            logit=float(logit[i]),
            contributions=contributions,
            other=float(row[order[len(kept) :]].sum()),
            members=dict(self.slopes),
        )


def explain(bundle: ModelBundle, X: ModelInput, *, keep: int | None = None) -> list[Explanation]:
    """:meth:`Explainer.explain` with every member attributed (builds the explainer each call)."""
    return Explainer(bundle).explain(X, keep=keep)
