"""Bicubic++: the channels_last fast path computes exactly the official layer graph."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restorekit.archs import bicubic_pp
from restorekit.model import build_model


def official_graph(net: bicubic_pp.BicubicPlusPlus, x: torch.Tensor) -> torch.Tensor:
    """The official forward (``models/SR_models.py``) spelled with functional ops, NCHW throughout."""

    def conv(layer: torch.nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, layer.weight, layer.bias, stride=layer.stride, padding=1)

    x0 = F.leaky_relu(conv(net.conv0, x), 0.1)
    x1 = F.leaky_relu(conv(net.conv1, x0), 0.1)
    x2 = F.leaky_relu(conv(net.conv2, x1), 0.1) + x0
    return F.pixel_shuffle(conv(net.conv_out, x2), 2 * net.config.scale)


@pytest.mark.parametrize(
    "config",
    [bicubic_pp.Config(), bicubic_pp.Config(channels=34, bias=True), bicubic_pp.Config(scale=2, channels=8)],
    ids=["x3", "x3-wide-bias", "x2"],
)
def test_fast_path_equals_official_graph(config: bicubic_pp.Config) -> None:
    torch.manual_seed(0)
    net = bicubic_pp.build(config).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, 24, 38)
    with torch.inference_mode():
        ours = net(x)
    assert ours.shape == (2, 3, 24 * config.scale, 38 * config.scale)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, official_graph(net, x), atol=1e-5, rtol=0)


def test_fast_path_gradients_equal_official_graph() -> None:
    torch.manual_seed(1)
    net = bicubic_pp.build(bicubic_pp.Config(channels=6, bias=True))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.rand(1, 3, 10, 12)
    target = torch.rand(1, 3, 30, 36)
    grads = []
    for forward in (net, lambda t: official_graph(net, t)):
        net.zero_grad()
        F.mse_loss(forward(x), target).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_odd_sizes_give_exactly_scale_times_the_input() -> None:
    config = bicubic_pp.Config(channels=4)
    model = build_model("bicubic_pp", config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 3, 21, 27)
        # RestorationModel pads odd sizes by edge replication (PAD_MODE) and crops to 3H x 3W
        expected = model.net(F.pad(x, (0, 1, 0, 1), mode="replicate"))[..., :21, :27]
        assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="multiples of 2"):
        model.net(x)
