"""Reports for people: an exploratory look at a fleet, and what acting on a model's alerts saves.

``eda`` builds the EDA page, ``savings`` prices maintenance policies, ``business`` applies them to
a registered model (:func:`savings_for_model`, shown by ``prognos report savings`` and the
dashboard's business view), ``html`` writes self-contained pages.
"""

from prognos.reports.business import ModelSavings, SavingsEvaluation, savings_for_model
from prognos.reports.savings import PolicyCost, Savings

__all__ = ["ModelSavings", "PolicyCost", "Savings", "SavingsEvaluation", "savings_for_model"]
