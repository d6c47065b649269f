import pytest
import torch

from shared import nets
from shared.nets.teacher import WeightsUnavailable, imagenet_weights_cached, resolve_init


def run(net, x):
    """A student's forward pass; hinted students are told σ = 2 (and noise 0.004, 0.006 when they take it, and a
    shape that reads mostly Gaussian)."""
    if not net.uses_hint:
        return net(x)
    hint = torch.tensor([2.0, 0.004, 0.006, 0.7, 0.2, 0.05, 5.0, 1.0, 3.0][: net.hint_size], dtype=x.dtype)
    return net(x, hint.expand(x.shape[0], -1))


@pytest.mark.parametrize("arch", list(nets.STUDENTS))
def test_student_shapes_and_budget(arch):
    net = nets.build(arch).eval()
    x = torch.rand(2, 3, 48, 64)
    assert run(net, x).shape == x.shape
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) for c in convs)
    low = 45_000 if net.spec.widths[1] < 64 else 55_000   # the lean student: half the middle layer
    assert low < nets.count_parameters(net) < (80_000 if net.spec.bank else 75_000 if net.spec.wiener else 70_000)


def test_bank_student_starts_as_blind_wiener_and_blends_per_pixel():
    """Untrained, the bank student is its Wiener front end; its last convolution's outputs are an RGB
    correction and one weight per bank direction, the last of which leads back to the input."""
    torch.manual_seed(0)
    bank, plain = nets.build("student-s2d-wbank").eval(), nets.build("student-s2d-wiener").eval()
    plain.front.load_state_dict(bank.front.state_dict())
    x = torch.rand(2, 3, 48, 64)
    assert torch.equal(run(bank, x), run(plain, x))
    last = bank.body[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():   # weight 1 on the input's direction at every pixel (4 sub-pixels after unshuffle)
        last.bias[-4:] = 1.0
    assert torch.allclose(run(bank, x), x, atol=1e-5)
    with torch.no_grad():   # weight 1 on the first bank filter (σ·1.25): its own output
        last.bias.zero_()
        last.bias[12:16] = 1.0
    h = torch.tensor([2.0, 0.004, 0.006]).expand(2, -1)
    sharper = list(bank.front.bank_filters(x, h[:, 0], h[:, 1], h[:, 2]))[1]
    assert torch.allclose(run(bank, x), sharper, atol=1e-5)
    assert not torch.allclose(sharper, run(plain, x), atol=1e-3)


def test_luma_bank_moves_the_three_channels_together_by_the_luma_difference():
    """Weight 1 on the first bank filter: a luma bank adds that filter's luma minus the front end's luma to
    all three channels, where the RGB bank would give the filter's own colour output."""
    from shared.nets.wiener import luma
    torch.manual_seed(0)
    net = nets.build("student-s2d-wbank-luma").eval()
    x = torch.rand(2, 3, 48, 64)
    last = net.body[-1]
    with torch.no_grad():
        torch.nn.init.zeros_(last.weight)
        last.bias[12:16] = 1.0
    h = torch.tensor([2.0, 0.004, 0.006]).expand(2, -1)
    base, sharper = list(net.front.bank_filters(x, h[:, 0], h[:, 1], h[:, 2]))[:2]
    out = run(net, x)
    assert torch.allclose(out - base, (luma(sharper) - luma(base)).expand(-1, 3, -1, -1), atol=1e-5)
    assert not torch.allclose(out, sharper, atol=1e-3)


@pytest.mark.parametrize("arch", ["student-s2d", "student-s2d-hint", "student-s2d-wbank", "student-s2d-wbank-luma",
                                  "student-s2d-wbank-lean"])
def test_inference_shortcuts_compute_the_training_forward(arch):
    """Without autograd a student folds its unshuffle into its first convolution, a hinted one its hint into
    the convolutions' biases (one hint for the batch), and a bank student runs its filters one at a time: the
    same numbers as the training path, for a batch with one hint and for one with a hint per image."""
    torch.manual_seed(1)
    net = nets.build(arch).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(3, 3, 40, 56)
    for hint in (torch.tensor([[2.0, 0.004, 0.006, 0.7, 0.2, 0.05]]).expand(3, -1),
                 torch.tensor([[2.0, 0.004, 0.006, 0.7, 0.2, 0.05], [0.7, 0.0, 0.001, 0.0, 0.0, 0.9],
                               [3.1, 0.01, 0.02, 0.1, 0.8, 0.0]])):
        hint = hint[:, : net.hint_size]
        with torch.enable_grad():
            trained = net(x, hint)
        with torch.inference_mode():
            fast = net(x, hint)
        assert trained.requires_grad and not fast.requires_grad
        assert torch.allclose(fast, trained.detach(), atol=1e-5)
        assert (trained.detach() - x).abs().max() > 1e-2     # the weights do something


def test_seed_student_is_the_original_design():
    net = nets.build("student-seed")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 64), (64, 32), (32, 3)]
    assert nets.count_parameters(net) == 58_051
    assert list(net.state_dict()) == [f"body.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")]
    assert not net.spec.residual


def test_residual_students_start_as_identity():
    x = torch.rand(1, 3, 32, 32)
    for arch in ("student", "student-s2d", "student-dilated", "student-s2d-dilated", "student-s2d-hint"):
        assert torch.equal(run(nets.build(arch), x), x)


def test_hinted_student_extends_its_base_and_uses_the_hint():
    base = nets.build("student-s2d")
    for p in base.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    hinted = nets.build("student-s2d-hint")
    missing, unexpected = hinted.load_state_dict(base.state_dict(), strict=False)
    assert sorted(missing) == ["hint.0.weight", "hint.1.weight", "hint.2.weight"] and not unexpected
    x = torch.rand(2, 3, 32, 32)
    for sigma in (0.5, 3.0):  # zero-initialised hint weights: exactly the base student, whatever the hint
        assert torch.allclose(hinted(x, torch.full((2,), sigma)), base(x), atol=1e-6)
    for lin in hinted.hint:
        torch.nn.init.normal_(lin.weight, 0, 0.1)
    out = hinted(x, torch.tensor([0.5, 3.0]))
    assert not torch.allclose(out[0], hinted(x, torch.tensor([3.0, 3.0]))[0])  # the hint matters, per image
    assert torch.allclose(out[1], hinted(x[1:], torch.tensor([3.0]))[0], atol=1e-6)
    with pytest.raises(ValueError, match="blur estimate"):
        hinted(x)


@pytest.mark.parametrize("arch", list(nets.STUDENTS))
def test_receptive_radius_is_exact(arch):
    """An impulse's influence reaches exactly ``receptive_radius`` pixels and no further."""
    torch.manual_seed(0)
    net = nets.build(arch).double().eval()
    for p in net.parameters():  # non-zero, positive weights so every path contributes
        torch.nn.init.uniform_(p, 0.01, 0.1)
    if net.front is not None:  # a weakly regularised Wiener kernel: its tails reach the kernel's edge
        net.front.log_balance.data.fill_(-7.0)
    r = net.receptive_radius
    size = 2 * r + 20
    x = torch.zeros(1, 3, size, size, dtype=torch.float64)
    c = size // 2
    base = run(net, x)
    x[0, :, c, c] = 1.0
    diff = (run(net, x) - base).abs().sum(1)[0]
    changed = diff > diff.max() * 1e-6  # FFT round-off (the Wiener front end) spreads ~1e-8 everywhere
    ys, xs = torch.nonzero(changed, as_tuple=True)
    reach = max(int((ys - c).abs().max()), int((xs - c).abs().max()))
    assert reach <= r
    assert reach >= r - (net.scale - 1)  # the unshuffle grid makes the reach depend on the pixel's phase


def test_teacher_shape_residual_and_frozen_features():
    teacher = nets.build("teacher").eval()
    x = torch.rand(1, 3, 64, 96)
    assert torch.equal(teacher(x), x)  # zero-initialised head: starts as the identity
    feats = nets.ResNet18Features("random", layers=(1, 2))
    out = feats(x)
    assert [f.shape[1] for f in out] == [64, 128]
    assert not any(p.requires_grad for p in feats.parameters())
    feats.train()
    assert not feats.training


def test_imagenet_init_is_a_clear_error_without_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert imagenet_weights_cached() is None
    with pytest.raises(WeightsUnavailable, match="--teacher-init random"):
        resolve_init("imagenet")
    assert resolve_init("auto") == "random"


def test_imagenet_init_loads_cached_weights_through_torchvision(tmp_path, monkeypatch):
    """Weights placed in torchvision's cache are used by the real torchvision weights API."""
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = resnet18()
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    # torchvision checks the file-name hash prefix only when check_hash is set; it is not, as in the hub default
    torch.save(ref.state_dict(), ckpt / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1])
    assert resolve_init("auto") == "imagenet"
    teacher = nets.build("teacher", teacher_init="imagenet")
    assert torch.equal(teacher.stem[0].weight, ref.conv1.weight)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        nets.build("resnet50")
