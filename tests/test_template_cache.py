"""The template and atlas maps a run derives once and every session reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csvd_bids.preproc.atlas import load_atlas
from csvd_bids.preproc.template import load_template
from csvd_bids.preproc.template_cache import (
    read_atlas_structures,
    read_template_cache,
    write_template_cache,
)
from csvd_bids.quant.roi_patches import atlas_centres, centres_of


def test_the_maps_read_back_are_those_derived(tmp_path):
    folder = write_template_cache(tmp_path / "maps")
    template, atlas = read_template_cache(folder)
    derived, derived_atlas = load_template(), load_atlas()
    assert np.array_equal(template.t1.get_fdata(), derived.t1.get_fdata())
    assert np.array_equal(template.t1.affine, derived.t1.affine)
    assert sorted(template.priors) == sorted(derived.priors)
    for name, image in derived.priors.items():
        assert np.array_equal(np.asanyarray(template.priors[name].dataobj), image.dataobj)
    assert np.array_equal(template.supraventricular.dataobj, derived.supraventricular.dataobj)
    for name in ("structures", "lobes", "cortex"):
        assert np.array_equal(getattr(atlas, name), getattr(derived_atlas, name))
    assert np.array_equal(atlas.affine, derived_atlas.affine)
    assert [p.name for p in tmp_path.iterdir()] == ["maps"]  # no staging folder left behind


def test_maps_of_other_code_are_refused_and_rewritten(tmp_path):
    folder = write_template_cache(tmp_path / "maps")
    grids = folder / "grids.json"
    grids.write_text(json.dumps({**json.loads(grids.read_text()), "source_digest": "older"}))
    with pytest.raises(ValueError, match="no template maps of this version"):
        read_template_cache(folder)
    with pytest.raises(ValueError, match="no template maps of this version"):
        read_atlas_structures(folder)
    write_template_cache(folder)  # a stale folder is replaced, a current one kept
    read_template_cache(folder)


def test_the_basal_ganglia_centres_from_the_cache_are_the_atlas_centres(tmp_path):
    """BasalGangliaStats reads the structures alone from the run's cache instead of deriving
    the atlas again: the regions' voxels, and so their centroids, are the same."""
    structures, affine = read_atlas_structures(write_template_cache(tmp_path / "maps"))
    assert np.array_equal(structures, load_atlas().structures)
    assert np.array_equal(affine, load_atlas().affine)
    from_cache, derived = centres_of(structures, affine), atlas_centres()
    assert sorted(from_cache) == sorted(derived) and len(derived) == 6
    assert all(np.array_equal(from_cache[roi], derived[roi]) for roi in derived)
