"""prognos: predictive maintenance from fleet sensor data.

Import what you need from the stage modules (`prognos.data`, `prognos.features`, ...); nothing here
has side effects at import time.
"""

__version__ = "0.1.0"
