"""One reading of a SphereFace2 head's keywords: the fused alias's signature, chunk_size
checked by every SphereFace2 head, and the sharded head built from the same settings."""

from __future__ import annotations

import inspect

import pytest

from sphereface2.heads import HEADS, FusedSphereFace2Head, SphereFace2Head, build_head
from sphereface2.heads.sharded import ShardedSphereFace2Head, build_sharded_head
from sphereface2.heads.sphereface2 import registered_settings
from sphereface2.registry import UnknownOptionError


def test_the_fused_alias_takes_the_plain_signature_less_implementation():
    plain = list(inspect.signature(SphereFace2Head).parameters)
    fused = list(inspect.signature(FusedSphereFace2Head).parameters)
    assert fused == [name for name in plain if name != "implementation"]
    assert HEADS.options("sphereface2_fused") == fused
    head = FusedSphereFace2Head(6, 4, "A", 0.6, m=0.5, chunk_size=2, validate=False)
    assert (head.implementation, head.margin_type, head.lam, head.m) == ("fused", "A", 0.6, 0.5)
    assert (head.chunk_size, head.validate) == (2, False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'implementation'"):
        FusedSphereFace2Head(6, 4, implementation="plain")
    with pytest.raises(UnknownOptionError, match="unknown parameter"):
        build_head("sphereface2_fused", 6, 4, implementation="plain")


@pytest.mark.parametrize("name", ["sphereface2", "sphereface2_fused"])
def test_every_sphereface2_head_checks_chunk_size(name):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"{name}: chunk_size must be a positive"):
            build_head(name, 6, 4, chunk_size=bad)
        with pytest.raises(ValueError, match=f"{name}: chunk_size must be a positive"):
            build_sharded_head(name, 6, 4, chunk_size=bad)


def test_registered_settings_fill_defaults_and_the_fixed_implementation():
    head_class, settings = registered_settings("sphereface2_fused", {"lam": 0.6})
    assert head_class is FusedSphereFace2Head
    assert settings.implementation == "fused" and settings.params.lam == 0.6
    assert settings.chunk_size is None and settings.validate is True
    head_class, settings = registered_settings("sphereface2", {"implementation": "plain"})
    assert head_class is SphereFace2Head and settings.implementation == "plain"
    sharded = ShardedSphereFace2Head(6, 4, name="sphereface2", t=2.0, validate=False)
    assert (sharded.t, sharded.validate, sharded.implementation) == (2.0, False, "auto")
    assert not sharded.fused
    with pytest.raises(UnknownOptionError, match="unknown parameter"):
        ShardedSphereFace2Head(6, 4, name="sphereface2_fused", implementation="plain")
