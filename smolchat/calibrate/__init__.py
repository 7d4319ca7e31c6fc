"""Measuring this computer once, and loading a model pair with what measured fastest.

Above the engine: the engine runs the vision plan it is handed and measures nothing; this
package times probe models (vision encoders, precisions, thread counts), keeps the
measurements per CPU and library version, and turns them into a plan and a first estimate
of the seconds per image tile.
"""

from smolchat.calibrate.loading import open_engine
from smolchat.calibrate.tuning import Measurements, cached_measurements, measurements, plan, probe_seconds_per_tile

__all__ = ["Measurements", "cached_measurements", "measurements", "open_engine", "plan", "probe_seconds_per_tile"]
