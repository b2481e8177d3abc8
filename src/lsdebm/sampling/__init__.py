"""Schedules, the Langevin sampler, the reverse chain as events, guidance and trajectories."""
from lsdebm.sampling.events import LangevinEvent, ResultEvent, StepEvent
from lsdebm.sampling.langevin import langevin, langevin_iter
from lsdebm.sampling.reverse import conditional_energy, forward_events, reverse_events
from lsdebm.sampling.schedule import Schedule, make_schedule
from lsdebm.sampling.trajectory import Trajectory, TrajectoryRecorder

__all__ = ["LangevinEvent", "ResultEvent", "StepEvent", "langevin", "langevin_iter", "conditional_energy",
           "forward_events", "reverse_events", "Schedule", "make_schedule", "Trajectory", "TrajectoryRecorder"]
