import pytest

from sphereface2.registry import Registry, UnknownNameError


def test_registry_builds_and_lists_valid_names_on_error():
    reg: Registry[dict] = Registry("widget")

    @reg.register("b")
    def make_b(**kw):
        return {"b": kw}

    @reg.register("a")
    def make_a(**kw):
        return {"a": kw}

    assert reg.names() == ["a", "b"]
    assert reg.build("a", x=1) == {"a": {"x": 1}}
    assert "a" in reg and "c" not in reg
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; valid names: a, b"):
        reg.build("c")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(make_a)
