"""Frozen, validated configuration: the dataclasses (:mod:`.schema`), the presets (:mod:`.presets`)
and changing a config (:mod:`.overrides`). ``from lsdebm.config import X`` works for all of them."""
from __future__ import annotations

from lsdebm.config.overrides import apply_sets, parse_sets, parse_value, replace_fields
from lsdebm.config.presets import PRESETS, get_preset
from lsdebm.config.schema import (
                                  ENCODER_LOSSES,
                                  INPUT_VALUES,
                                  LANGEVIN_INITS,
                                  LIKELIHOODS,
                                  LOSS_WEIGHTINGS,
                                  LR_SCHEDULES,
                                  MODEL_KINDS,
                                  SCHEDULE_KINDS,
                                  SECTIONS,
                                  TIME_EMBEDDINGS,
                                  Config,
                                  ConfigError,
                                  ConsistencyConfig,
                                  LangevinConfig,
                                  LEBMConfig,
                                  LossConfig,
                                  ModelConfig,
                                  ScheduleConfig,
                                  TrainConfig,
                                  check_model_memory,
)

__all__ = ["ENCODER_LOSSES", "INPUT_VALUES", "LANGEVIN_INITS", "LIKELIHOODS", "LOSS_WEIGHTINGS", "LR_SCHEDULES",
           "MODEL_KINDS", "PRESETS", "SCHEDULE_KINDS", "SECTIONS", "TIME_EMBEDDINGS", "Config", "ConfigError",
           "ConsistencyConfig", "LEBMConfig", "LangevinConfig", "LossConfig", "ModelConfig", "ScheduleConfig",
           "TrainConfig", "apply_sets", "check_model_memory", "get_preset", "parse_sets", "parse_value",
           "replace_fields"]
