"""ModelConfig.input_values: a ReconNet may see the share of each model voxel its input covers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lsdebm.config import ConfigError, get_preset
from lsdebm.data.frame import crop_label
from lsdebm.data.mixed_set import MixedPairs
from lsdebm.data.phantoms import make_vertebra


def test_fraction_crop_keeps_the_sub_voxel_boundary():
    p = make_vertebra("L3", seed=0, size=96, spacing=1.0)
    binary, _ = crop_label(p.mask, p.affine, None, 56, 2.0)  # 112 mm: the whole vertebra
    fraction, _ = crop_label(p.mask, p.affine, None, 56, 2.0, values="fraction")
    assert binary.dtype == np.uint8 and set(np.unique(binary)) <= {0, 1}
    assert fraction.dtype == np.float32 and 0.0 <= fraction.min() and fraction.max() <= 1.0
    partial = (fraction > 0.05) & (fraction < 0.95)
    assert partial.sum() > 0.2 * binary.sum()  # a boundary layer of partly covered voxels
    # the covered volume is kept: 8 mm^3 per model voxel against 1 mm^3 per input voxel
    assert abs(fraction.sum() * 8.0 - p.mask.sum()) < 0.03 * p.mask.sum()
    assert ((fraction >= 0.5) != binary).mean() < 0.02  # thresholded, the two agree


def test_binary_stays_the_default_and_unknown_values_are_refused():
    assert get_preset("default").model.input_values == "binary"
    with pytest.raises(ConfigError, match="input_values"):
        get_preset("tiny").replace(**{"model.input_values": "soft"})


def test_training_bank_stores_fractions_for_fraction_models():
    p = make_vertebra("L2", seed=1, size=96, spacing=1.0)
    from lsdebm.data.mixed_set import Source

    src = [Source("one", "real", p.mask, p.affine)]
    bank = MixedPairs(src, 2, 1.0, 32, 2.0, "world", (0.0, 0.0, 0.0), seed=0, values="fraction")
    assert bank.lq.dtype == torch.float16 and bank.hq.dtype == torch.uint8
    lq = bank.lq.float()
    assert ((lq > 0.05) & (lq < 0.95)).any() and 0.0 <= lq.min() and lq.max() <= 1.0
    plain = MixedPairs(src, 2, 1.0, 32, 2.0, "world", (0.0, 0.0, 0.0), seed=0)
    assert plain.lq.dtype == torch.uint8
    assert torch.equal(plain.hq, bank.hq)  # the same draws; only the input's values differ
