import pytest

from sphereface2.registry import Registry, UnknownNameError, UnknownOptionError


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


def test_options_are_the_builders_keywords_and_unknown_ones_are_refused_by_one_check():
    reg: Registry[dict] = Registry("widget")

    @reg.register("w")
    def make_w(size, *args, colour="red", shape="round", **extra):
        return {}

    assert reg.options("w") == ["size", "colour", "shape"]
    assert reg.options("w", exclude=("size",)) == ["colour", "shape"]
    reg.check_options("w", ["colour"], exclude=("size",))  # accepted: no error
    with pytest.raises(UnknownOptionError) as err:
        reg.check_options("w", ["size", "weight", "age"], exclude=("size",))
    assert str(err.value) == (
        "widget 'w' got unknown option(s) age, size, weight; valid options: colour, shape"
    )
    # one exception type that callers catching either of the old ones still see
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    with pytest.raises(UnknownOptionError, match="unknown parameter.s. x; it accepts: colour"):
        reg.check_options("w", ["x"], ("size",), what="parameter", listing="it accepts")
    with pytest.raises(UnknownNameError):
        reg.options("nope")
