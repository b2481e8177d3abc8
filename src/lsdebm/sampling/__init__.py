"""Schedules, the Langevin sampler, the reverse chain as events, trajectories and decode caching."""
from lsdebm.sampling.decode_cache import DecodeCache
from lsdebm.sampling.events import LangevinEvent, ResultEvent, StepEvent
from lsdebm.sampling.langevin import langevin, langevin_iter
from lsdebm.sampling.methods import RunSettings, decode, generate_events, iterations, make_generator, run, run_events
from lsdebm.sampling.reverse import conditional_energy, forward_events, reverse_events
from lsdebm.sampling.schedule import Schedule, make_schedule
from lsdebm.sampling.trajectory import Trajectory, TrajectoryRecorder

__all__ = ["DecodeCache", "LangevinEvent", "ResultEvent", "StepEvent", "langevin", "langevin_iter", "RunSettings",
           "decode", "generate_events", "iterations", "make_generator", "run", "run_events", "conditional_energy",
           "forward_events", "reverse_events", "Schedule", "make_schedule", "Trajectory", "TrajectoryRecorder"]
