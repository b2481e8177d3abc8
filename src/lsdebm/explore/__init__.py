"""Qt-free core of the explorer: recorded runs, lazily decoded trajectory volumes, plots, PNGs.

The napari plugin (``napari_lsdebm``) and ``lsdebm demo`` are thin layers over these modules:
``record`` (run a checkpoint on a model-grid input with progress and cancel), ``volumes``
(:class:`TrajectoryVolumes`, the (t, k, Z, Y, X) lazy array), ``plots`` (Fig. 5 and Langevin
curves on matplotlib Axes), ``render`` (iso-surface PNGs) and ``demo`` (the headless demo).
"""
from lsdebm.explore.record import (
                                   Progress,
                                   RunCancelled,
                                   RunOutput,
                                   RunStep,
                                   count_events,
                                   drain,
                                   find_checkpoint,
                                   make_settings,
                                   prepare_input,
                                   record_run,
                                   run_metadata,
)
from lsdebm.explore.volumes import TrajectoryVolumes, make_decoder

__all__ = ["Progress", "RunCancelled", "RunOutput", "RunStep", "count_events", "drain", "find_checkpoint",
           "make_settings", "prepare_input", "record_run", "run_metadata", "TrajectoryVolumes", "make_decoder"]
