import pytest
import torch

from shared import nets
from trainer.prune import prunable, prune_into


def wide_student_with_constant_channels(live: int) -> nets.FourConvStudent:
    """A random bank student whose middle layer has ``live`` varying channels; the others are constant
    (no weights in, a positive bias, no hint shift): dropping them, with their means absorbed, is exact."""
    torch.manual_seed(0)
    net = nets.build("student-s2d-wbank").eval()
    with torch.no_grad():
        for conv in net.body[::2]:
            torch.nn.init.normal_(conv.weight, std=0.05)
            torch.nn.init.uniform_(conv.bias, -0.05, 0.1)
        for lin in net.hint:
            torch.nn.init.normal_(lin.weight, std=0.05)
        dead = torch.arange(64) % 2 == 1                  # every second channel of the middle layer
        net.body[2].weight[dead] = 0
        net.body[2].bias[dead] = torch.rand(int(dead.sum())) * 0.2 + 0.05
        net.hint[1].weight[dead] = 0
    return net


def test_pruning_drops_constant_channels_and_bank_filters_exactly():
    source = wide_student_with_constant_channels(32)
    lean = nets.build("student-s2d-wbank-lean").eval()
    assert prunable(lean, source) and not prunable(source, lean)
    torch.manual_seed(1)
    crops = torch.rand(4, 3, 96, 96)
    hints = torch.tensor([[1.5, 0.004, 0.005], [2.0, 0.002, 0.003], [1.0, 0.01, 0.01], [2.5, 0.0, 0.001]])
    kept = prune_into(lean, source, crops, hints)
    assert kept[1] == list(range(0, 64, 2))               # the varying channels, and only they
    # the last layer: RGB and the weights of bank filters 2 and 3 and of the input (4 sub-pixels each)
    rows = [c * 4 + k for c in (0, 1, 2, 5, 6, 7) for k in range(4)]
    assert kept[3] == rows and lean.spec.bank_filters == (2, 3)
    assert lean.body[2].weight.shape == (32, 64, 3, 3) and lean.body[6].weight.shape == (24, 32, 3, 3)
    x = torch.cat([crops, source.front(crops, hints[:, 0], hints[:, 1], hints[:, 2])], dim=1)
    with torch.no_grad():
        a = source._convolutions(x, source._features(hints))[:, rows]
        b = lean._convolutions(x, lean._features(hints))
    assert a.abs().mean() > 0.01
    # equal away from the zero padding, where a dropped constant channel's mean was not there to absorb
    torch.testing.assert_close(b[..., 2:-2, 2:-2], a[..., 2:-2, 2:-2], atol=1e-5, rtol=1e-4)
    assert (b - a).abs().max() > 1e-4
    # and the whole network blends the filters it kept: the source with the others' weights at zero
    with torch.no_grad():
        for c in (3, 4):
            source.body[6].weight[c * 4:c * 4 + 4] = 0
            source.body[6].bias[c * 4:c * 4 + 4] = 0
        full, fewer = source(crops, hints), lean(crops, hints)
    torch.testing.assert_close(fewer[..., 8:-8, 8:-8], full[..., 8:-8, 8:-8], atol=1e-4, rtol=1e-4)


def test_pruning_keeps_the_bank_filters_in_their_order():
    import dataclasses
    source = nets.build("student-s2d-wbank")
    swapped = nets.FourConvStudent(dataclasses.replace(nets.STUDENTS["student-s2d-wbank-lean"], bank_filters=(3, 2)))
    assert prunable(nets.build("student-s2d-wbank-lean"), source) and not prunable(swapped, source)


def test_pruning_refuses_another_layout():
    with pytest.raises(ValueError, match="cannot prune"):
        prune_into(nets.build("student-s2d-wbank-lean"), nets.build("student-s2d-hint"),
                   torch.rand(1, 3, 32, 32), torch.ones(1, 3))
