"""Features: one definition serving training (offline) and serving (online).

``FeaturePipeline`` learns regimes, scalers and which sensors to keep, and turns a whole history
into a feature matrix; ``OnlineFeatures`` turns one new reading into that asset's feature row with
the same arithmetic, so both paths agree to the last bit.
"""

from prognos.features.asset_state import AssetState
from prognos.features.online import OnlineFeatures
from prognos.features.pipeline import FeaturePipeline
from prognos.features.spec import FeatureSpec
from prognos.features.stores import MemoryStateStore, RedisStateStore, StateStore, make_state_store

__all__ = [
    "AssetState",
    "FeaturePipeline",
    "FeatureSpec",
    "MemoryStateStore",
    "OnlineFeatures",
    "RedisStateStore",
    "StateStore",
    "make_state_store",
]
