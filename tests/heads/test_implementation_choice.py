"""SphereFace2Head's ``implementation`` option: auto switches to the fused pass on size."""

from __future__ import annotations

import pytest
import torch

from sphereface2.heads import SphereFace2Head


def _pair(implementation_a: str, implementation_b: str, batch: int, classes: int):
    torch.manual_seed(3)
    a = SphereFace2Head(classes, 8, implementation=implementation_a).double()
    b = SphereFace2Head(classes, 8, implementation=implementation_b).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(batch, 8, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,))
    return a, b, x, y


@pytest.mark.parametrize("batch,classes", [(4, 50), (64, 4096)])
def test_auto_equals_plain_below_and_above_the_switch(batch, classes):
    plain, auto, x, y = _pair("plain", "auto", batch, classes)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = plain(xa, y), auto(xb, y)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(plain.weight.grad, auto.weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(plain.bias.grad, auto.bias.grad, rtol=1e-10, atol=1e-12)


def test_auto_uses_the_fused_pass_only_when_large(monkeypatch):
    import sphereface2.heads.sphereface2 as module

    calls = []
    original = module.fused_head_forward

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "fused_head_forward", spy)
    small, _, x, y = _pair("auto", "plain", 4, 50)
    small(x.requires_grad_(), y)
    assert calls == []
    large, _, x, y = _pair("auto", "plain", 64, 4096)
    large(x.requires_grad_(), y)
    assert calls == [1]


def test_unknown_implementation_is_named():
    with pytest.raises(ValueError, match="implementation"):
        SphereFace2Head(10, 4, implementation="turbo")
