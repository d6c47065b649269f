import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shared.inference import load_model
from trainer.checkpoint import CheckpointMismatch
from trainer.config import make_config
from trainer.loop import export_checkpoint, train

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(crop=48, batch_size=4, patches_per_image=2, val_max_side=64, val_sigmas=(1.0, 2.0))


def test_two_epoch_smoke(photo_folder, tmp_path):
    seen = []
    cfg = make_config("plain", data=[str(photo_folder)], epochs=2, checkpoint_every=1, **SMALL)
    result = train(cfg, tmp_path / "run", on_epoch=lambda e, m: seen.append(e), progress=False)
    assert result.epochs == 2 and seen == [1, 2]
    for key in ("loss", "val_ssim", "val_psnr", "ssim@1", "psnr@2", "input_ssim"):
        assert key in result.final
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
    model = load_model(result.model_path, "cpu")
    assert model.arch == cfg.arch and model.meta["epochs"] == 2 and model.meta["config"]["crop"] == 48
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["train"]) == 4 and len(split["val"]) == 1  # 15 % of 5, at least one


def test_distillation_from_a_teacher(photo_folder, tmp_path):
    teacher = train(make_config("teacher", data=[str(photo_folder)], epochs=1, **{**SMALL, "crop": 64}),
                    tmp_path / "teacher", progress=False)
    cfg = make_config("distill", data=[str(photo_folder)], teacher=str(teacher.model_path), epochs=1, **SMALL)
    result = train(cfg, tmp_path / "student", progress=False)
    assert {"loss_pixel", "loss_output_kd", "loss_feature_kd"} <= set(result.final)
    assert result.final["loss_feature_kd"] > 0


def test_hinted_student_starts_from_an_unhinted_one(photo_folder, tmp_path):
    plain = train(make_config("plain", arch="student-s2d", data=[str(photo_folder)], epochs=1, **SMALL),
                  tmp_path / "plain", progress=False)
    cfg = make_config("plain", arch="student-s2d-hint", data=[str(photo_folder)], epochs=1,
                      init_from=str(plain.model_path), **SMALL)
    hinted = train(cfg, tmp_path / "hinted", progress=False)
    model = load_model(hinted.model_path, "cpu")
    assert model.arch == "student-s2d-hint" and model.uses_hint
    assert any(float(lin.weight.detach().abs().sum()) > 0 for lin in model.net.hint)  # the hint was trained
    prov = model.meta["provenance"]  # the parent is named by its sha256, the command is recorded
    assert prov["parents"]["init_from"]["sha256"] == load_model(plain.model_path, "cpu").sha256
    assert "trainer" in prov["command"] or "pytest" in prov["command"]
    back = make_config("plain", arch="student-s2d", data=[str(photo_folder)], epochs=1,
                       init_from=str(hinted.model_path), **SMALL)
    with pytest.raises(ValueError, match="student-s2d-hint"):
        train(back, tmp_path / "back", progress=False)


def test_ssim_term_is_zero_on_the_target_and_pulls_towards_it():
    from trainer.losses import DistillationLoss
    loss_fn = DistillationLoss(make_config("plain", w_ssim=0.5))
    sharp = torch.rand(2, 3, 32, 32)
    _, terms = loss_fn(sharp.clone(), sharp, None)
    assert float(terms["ssim"]) == pytest.approx(0.0, abs=1e-6)
    pred = (sharp * 0.5 + 0.25).requires_grad_(True)  # lower contrast: SSIM < 1
    total, terms = loss_fn(pred, sharp, None)
    assert float(terms["ssim"]) > 0.01
    total.backward()
    stepped = (pred - 0.1 * pred.grad).detach()
    assert float(loss_fn(stepped, sharp, None)[1]["ssim"]) < float(terms["ssim"])


def test_original_preset_trains_the_seed_student(photo_folder, tmp_path):
    cfg = make_config("original", data=[str(photo_folder)], epochs=1, **SMALL)
    assert (cfg.arch, cfg.pixel_loss, cfg.lr) == ("student-seed", "mse", 1e-4) and cfg.w_feature_kd > 0
    result = train(cfg, tmp_path / "run", progress=False)
    assert "loss_feature_kd" in result.final


def test_resume_refuses_another_architecture(photo_folder, tmp_path):
    train(make_config("plain", data=[str(photo_folder)], epochs=1, **SMALL), tmp_path / "run", progress=False)
    other = make_config("plain", arch="student-seed", data=[str(photo_folder)], epochs=2, **SMALL)
    with pytest.raises(CheckpointMismatch, match="student-seed"):
        train(other, tmp_path / "run", resume=True, progress=False)
    changed = make_config("plain", data=[str(photo_folder)], epochs=2, **{**SMALL, "crop": 32})
    with pytest.raises(CheckpointMismatch, match="crop"):
        train(changed, tmp_path / "run", resume=True, progress=False)


def _train_cmd(folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "student", "--data", str(folder), "--out", str(out),
            "--preset", "plain", "--epochs", "8", "--checkpoint-every", "2", "--crop", "64", "--batch-size", "4",
            "--patches-per-image", "12", "--val-max-side", "64", "--val-sigmas", "2"]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_loader_workers_neither_hang_nor_change_the_result(photo_folder, tmp_path):
    """Workers are forked every epoch from a parent that has used torch's and cv2's thread pools."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    states = []
    for workers in ("0", "1"):
        cmd = [*_train_cmd(photo_folder, tmp_path / workers), "--epochs", "3", "--workers", workers]
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=240)
        states.append(torch.load(tmp_path / workers / "model.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_sigkill_then_resume_continues_exactly(photo_folder, tmp_path):
    # reference: the same run, never interrupted
    subprocess.run(_train_cmd(photo_folder, tmp_path / "ref"), check=True, env=_env(), capture_output=True)
    ref = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state_dict"]

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(photo_folder, run), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(ckpt, weights_only=False)["epoch"]
    assert 2 <= killed_at < 8 and not (run / "model.pt").exists()

    out = subprocess.run(_train_cmd(photo_folder, run) + ["--resume"], check=True, env=_env(),
                         capture_output=True, text=True).stdout
    assert f"after epoch {killed_at}" in out
    epochs = [json.loads(l)["epoch"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 9))  # every epoch once: none lost, none repeated in the record
    resumed = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    for key, value in ref.items():  # same data order, same RNG, same optimizer state: same weights
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6)


def test_export_checkpoint_writes_a_loadable_model(photo_folder, tmp_path):
    train(make_config("plain", data=[str(photo_folder)], epochs=1, **SMALL), tmp_path / "run", progress=False)
    path = export_checkpoint(tmp_path / "run", tmp_path / "exported.pt")
    assert load_model(path, "cpu").meta["epochs"] == 1


@pytest.mark.parametrize("jitter", [0.0, 0.1])
def test_hinted_crops_are_told_the_true_sigma_with_jitter(photo_folder, jitter):
    from trainer.data import CropDataset, list_images

    files = list_images(photo_folder)
    cfg = make_config("plain", arch="student-s2d-hint", data=[str(photo_folder)], hint_jitter=jitter,
                      **{**SMALL, "patches_per_image": 40})
    data = CropDataset(files, cfg)
    log_ratio = torch.stack([torch.log(data[i][3][0] / data[i][2]) for i in range(len(data))])
    if jitter == 0:
        assert torch.allclose(log_ratio, torch.zeros_like(log_ratio), atol=1e-6)
    else:
        assert 0.07 < float(log_ratio.std()) < 0.13 and abs(float(log_ratio.mean())) < 0.03
    unhinted = CropDataset(files, make_config("plain", arch="student-s2d", data=[str(photo_folder)], **SMALL))
    assert unhinted[0][3].tolist() == [0.0, 0.0, 0.0]


def test_wiener_student_and_teacher_train_on_realistic_degradations(photo_folder, tmp_path):
    """One epoch each on every blur family with noise and JPEG; validation reports every family; the
    student distils from the Wiener teacher (three-number hints through both)."""
    (photo_folder / "manifest.json").write_text("{}")
    base = dict(data=[str(photo_folder)], epochs=1, degradation="realistic", **{**SMALL, "crop": 96})
    teacher = train(make_config("teacher", arch="teacher-wiener", **base), tmp_path / "t", progress=False)
    student = train(make_config("distill", arch="student-s2d-wiener", teacher=str(teacher.model_path), **base),
                    tmp_path / "s", progress=False)
    final = student.final
    for key in ("ssim@1", "ssim@unblurred", "ssim@defocus r=3", "ssim@shake 11 px", "ssim@gaussian 1.5 + noise + JPEG 90"):
        assert 0 < final[key] <= 1, key
    assert "output_kd" in " ".join(final) and load_model(student.model_path, "cpu").hint_size == 3
    prov = load_model(student.model_path, "cpu").meta["provenance"]
    assert prov["parents"]["teacher"]["sha256"] == load_model(teacher.model_path, "cpu").sha256
    assert list(prov["data_manifests"]) == [str(photo_folder)]


def test_wiener_loss_margin_needs_a_crop_larger_than_the_front_end(photo_folder, tmp_path):
    cfg = make_config("plain", arch="student-s2d-wiener", data=[str(photo_folder)], epochs=1, **{**SMALL, "crop": 64})
    with pytest.raises(ValueError, match="loss margin of 32 px"):
        train(cfg, tmp_path / "small", progress=False)


def test_crops_can_be_told_the_blur_estimators_own_reading(photo_folder):
    from trainer.data import CropDataset, list_images

    cfg = make_config("plain", arch="student-s2d-wiener", data=[str(photo_folder)], hint_source="estimate",
                      sigma_min=2.0, sigma_max=2.0, **{**SMALL, "crop": 64, "patches_per_image": 4})
    data = CropDataset(list_images(photo_folder), cfg)
    reads = torch.stack([data[i][3][0] for i in range(len(data))])
    assert reads.std() > 0.01                      # a reading per crop, not the true σ
    assert 1.5 < float(reads.mean()) < 2.6         # that reads σ = 2 roughly right


def test_wiener_crops_are_told_their_measured_noise(photo_folder):
    """Three-number hints: σ, then the noise readings of the degraded crop region (as at inference)."""
    from trainer.data import CropDataset, list_images

    files = list_images(photo_folder)
    clean = CropDataset(files, make_config("plain", arch="student-s2d-wiener", data=[str(photo_folder)], **SMALL))
    noisy = CropDataset(files, make_config("plain", arch="student-s2d-wiener", data=[str(photo_folder)],
                                           noise_prob=1.0, noise_max=0.03, **SMALL))
    quiet = torch.stack([clean[i][3] for i in range(len(clean))])
    loud = torch.stack([noisy[i][3] for i in range(len(noisy))])
    assert (quiet[:, 0] > 0).all() and (quiet[:, 1:] >= 0).all()
    assert float(loud[:, 1].mean()) > 3 * float(quiet[:, 1].mean())


def test_no_harm_loss_charges_only_crops_made_worse_than_the_floor():
    from trainer.losses import no_harm_loss
    target = torch.zeros(2, 3, 8, 8)
    floor = torch.full((2, 3, 8, 8), 0.1)
    better = torch.full((2, 3, 8, 8), 0.05)
    assert float(no_harm_loss(better, target, floor)) == 0.0
    mixed = better.clone()
    mixed[1] = 0.3                                  # crop 1 is 0.2 worse than its floor, crop 0 is better
    assert float(no_harm_loss(mixed, target, floor)) == pytest.approx(0.1)
    blurred = torch.stack([torch.full((3, 8, 8), 0.2), torch.full((3, 8, 8), 0.02)])   # crop 1 was sharp
    assert float(no_harm_loss(better, target, floor, blurred)) == pytest.approx(0.015)  # (0 + 0.03) / 2
    from trainer.config import check_config, make_config
    with pytest.raises(ValueError, match="no-harm floor"):
        check_config(make_config("realistic", no_harm_floor="input"))


def test_ssim_harm_charges_only_crops_whose_ssim_falls_below_their_inputs():
    """Grain on a flat crop costs little L1 but much SSIM: the SSIM harm term sees it, and pulls it away."""
    from shared.metrics import ssim_torch
    from trainer.losses import ssim_harm_loss
    g = torch.Generator().manual_seed(0)
    target = torch.full((2, 3, 32, 32), 0.5) + 0.01 * torch.rand(2, 3, 32, 32, generator=g)
    blurred = target.clone()
    blurred[:, :, 8:24, 8:24] += 0.02                            # a mild smooth error
    assert float(ssim_harm_loss(target.clone(), target, blurred)) == 0.0
    grainy = blurred.clone()
    grainy[1] += 0.03 * torch.randn(3, 32, 32, generator=g)      # crop 1 gets grain, crop 0 stays as its input
    grainy.requires_grad_(True)
    loss = ssim_harm_loss(grainy, target, blurred)
    lost = float(ssim_torch(blurred[1:], target[1:]) - ssim_torch(grainy[1:].detach(), target[1:]))
    assert lost > 0.1 and float(loss.detach()) == pytest.approx(lost / 2, rel=1e-4)
    loss.backward()
    assert grainy.grad[0].abs().max() == 0 and grainy.grad[1].abs().max() > 0


def test_bank_student_trains_from_a_wiener_student_with_the_no_harm_term(photo_folder, tmp_path):
    """The bank student's recipe (--preset realistic): started from a Wiener student's weights (its new output
    channels at zero), charged for crops it makes worse than its front end."""
    from shared.inference import PACKAGE_MODELS, file_sha256

    parent = PACKAGE_MODELS / "variants" / "s2d-wiener-unguarded.pt"
    estimator = other_estimator(photo_folder, tmp_path)
    cfg = make_config("realistic", arch="student-s2d-wbank", data=[str(photo_folder)], init_from=str(parent),
                      epochs=1, blur_estimator=str(estimator), **{**SMALL, "crop": 96, "batch_size": 4})
    assert cfg.w_no_harm > 0
    result = train(cfg, tmp_path / "bank", progress=False)
    model = load_model(result.model_path, "cpu")
    assert model.arch == "student-s2d-wbank" and "loss_no_harm" in result.final
    parents = model.meta["provenance"]["parents"]
    assert parents["init_from"]["sha256"] == file_sha256(parent)
    assert parents["blur_estimator"]["sha256"] == file_sha256(estimator)   # it read the crops' σ


def test_lean_student_is_pruned_from_the_bank_student_and_distilled_from_it(photo_folder, tmp_path):
    """The default's recipe: a narrower student started from a wider one's channels (``trainer.prune``) and
    taught by that model."""
    from shared.inference import PACKAGE_MODELS, file_sha256

    bank = PACKAGE_MODELS / "variants" / "s2d-wbank-guarded.pt"
    cfg = make_config("realistic", data=[str(photo_folder)], init_from=str(bank), teacher=str(bank),
                      w_output_kd=1.0, epochs=1, **{**SMALL, "crop": 96, "batch_size": 4})
    assert cfg.arch == "student-s2d-wbank-lean"
    result = train(cfg, tmp_path / "lean", progress=False)
    model = load_model(result.model_path, "cpu")
    assert model.arch == "student-s2d-wbank-lean" and result.final["loss_output_kd"] > 0
    parents = model.meta["provenance"]["parents"]
    assert parents["init_from"]["sha256"] == parents["teacher"]["sha256"] == file_sha256(bank)
    wide, lean = load_model(bank, "cpu").net.state_dict(), model.net.state_dict()
    assert lean["body.2.weight"].shape == (32, 64, 3, 3) and lean["body.6.weight"].shape == (24, 32, 3, 3)
    first = wide["body.0.weight"]          # every first-layer channel kept, a few small steps away
    assert (lean["body.0.weight"] - first).norm() < 0.05 * first.norm()


def other_estimator(photo_folder, tmp_path) -> Path:
    """An estimator other than the shipped one: three steps of training from it."""
    from shared.blur_estimate import ESTIMATOR_PATH
    from trainer.blur_estimator import EstimatorConfig, train_blur_estimator

    out = tmp_path / "other-estimator.pt"
    train_blur_estimator([photo_folder], out, EstimatorConfig(steps=3, batch_size=2, crop=64, lr=1e-2,
                                                              init_from=str(ESTIMATOR_PATH)))
    return out


def test_the_crops_are_read_by_the_estimator_the_run_names(photo_folder, tmp_path):
    """hint_source "estimate": the crop's σ hint is the named estimator's reading (the shipped one by default)."""
    from trainer.data import CropDataset, list_images

    files = list_images(photo_folder)
    other = other_estimator(photo_folder, tmp_path)
    shipped = CropDataset(files, make_config("realistic", data=[str(photo_folder)], crop=96))
    named = CropDataset(files, make_config("realistic", data=[str(photo_folder)], crop=96, blur_estimator=str(other)))
    *_, hint = shipped[0]
    *_, hint_named = named[0]
    assert hint_named[0].item() != pytest.approx(hint[0].item(), abs=1e-3)   # another estimator, another reading
    assert torch.equal(hint[1:], hint_named[1:])                          # the noise readings do not depend on it


def test_stop_after_checkpoints_and_a_resume_continues_exactly(photo_folder, tmp_path):
    """--stop-after N ends the run after epoch N with a checkpoint; resumed, it ends as one unbroken run
    (models/train-shipped.sh replays the default's resumes with it)."""
    base = dict(data=[str(photo_folder)], epochs=3, checkpoint_every=5, **SMALL)
    straight = train(make_config("plain", **base), tmp_path / "straight", progress=False)
    paused = train(make_config("plain", stop_after=1, **base), tmp_path / "paused", progress=False)
    assert paused.epochs == 1
    resumed = train(make_config("plain", **base), tmp_path / "paused", resume=True, progress=False)
    assert resumed.resumed_from == 1 and resumed.epochs == 3
    a = load_model(straight.model_path, "cpu").net.state_dict()
    b = load_model(resumed.model_path, "cpu").net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_pruned_run_starts_from_its_checkpoint_not_its_parent(photo_folder, tmp_path):
    """Resuming reads the checkpoint only: the ``--init-from`` file is not pruned again (it may be gone)."""
    import shutil

    from shared.inference import PACKAGE_MODELS

    parent = tmp_path / "bank.pt"
    shutil.copy(PACKAGE_MODELS / "variants" / "s2d-wbank-guarded.pt", parent)
    base = dict(data=[str(photo_folder)], init_from=str(parent), epochs=2, **{**SMALL, "crop": 96, "batch_size": 4})
    straight = train(make_config("realistic", **base), tmp_path / "straight", progress=False)
    train(make_config("realistic", stop_after=1, **base), tmp_path / "paused", progress=False)
    parent.unlink()
    resumed = train(make_config("realistic", **base), tmp_path / "paused", resume=True, progress=False)
    assert resumed.resumed_from == 1 and resumed.epochs == 2
    a = load_model(straight.model_path, "cpu").net.state_dict()
    b = load_model(resumed.model_path, "cpu").net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_shape_student_starts_as_the_lean_student_and_is_told_the_crops_shape(photo_folder, tmp_path):
    """student-s2d-wbank-shape extends the lean bank student: its weights for the three shape numbers start at
    zero (the lean student's output, whatever the shape reads), and its crops are told σ̂, the noise and the
    shape read from their degraded region, as at inference; the reader and the estimator are its parents."""
    from shared import nets
    from shared.inference import PACKAGE_MODELS, file_sha256
    from trainer.data import CropDataset, list_images
    from trainer.loop import _load_start

    lean = PACKAGE_MODELS / "variants" / "s2d-wbank-lean-unguarded.pt"
    cfg = make_config("realistic", arch="student-s2d-wbank-shape", data=[str(photo_folder)], init_from=str(lean),
                      epochs=1, **{**SMALL, "crop": 96, "batch_size": 4})
    crops = CropDataset(list_images(photo_folder), cfg)
    hints = torch.stack([crops[i][3] for i in range(4)])
    assert hints.shape == (4, 6) and (hints[:, 3:] >= 0).all() and (hints[:, 3:].sum(1) <= 1 + 1e-5).all()
    start, fresh = load_model(lean, "cpu").net.eval(), nets.build("student-s2d-wbank-shape")
    _load_start(fresh, cfg, crops)
    x, hint = torch.rand(2, 3, 96, 96), torch.tensor([[1.2, 0.002, 0.004, 0.9, 0.05, 0.0],
                                                      [0.8, 0.001, 0.003, 0.0, 0.1, 0.8]])
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x, hint), start(x, hint[:, :3]), atol=1e-5)
    result = train(cfg, tmp_path / "shape", progress=False)
    model = load_model(result.model_path, "cpu")
    assert model.arch == "student-s2d-wbank-shape" and model.hint_size == 6
    parents = model.meta["provenance"]["parents"]
    assert parents["init_from"]["sha256"] == file_sha256(lean)
    assert parents["shape_reader"]["sha256"] == file_sha256(PACKAGE_MODELS / "shape-reader.pt")
    assert parents["blur_estimator"]["sha256"] == file_sha256(PACKAGE_MODELS / "blur-estimator.pt")
    assert any(float(lin.weight.detach()[:, 4:].abs().sum()) > 0 for lin in model.net.hint)   # the shape was used


def test_flat_crops_are_the_flattest_candidate_and_uniform_crops_replay():
    import numpy as np

    from trainer.data import crop_position

    region = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
    region[:, :128] = 0.5                               # the left half flat, the right half busy
    flat = [crop_position(region, 64, np.random.default_rng(s), 1.0)[1] for s in range(200)]
    uniform = [crop_position(region, 64, np.random.default_rng(s), 0.0)[1] for s in range(200)]
    assert np.mean(flat) < 60 < 80 < np.mean(uniform)    # the leftmost of 4 (≈ 38) against a uniform x (≈ 96)
    for s in range(5):                                  # without flat crops, the draws of the uniform crop
        rng = np.random.default_rng(s)
        assert crop_position(region, 64, np.random.default_rng(s), 0.0) == (int(rng.integers(0, 193)),
                                                                           int(rng.integers(0, 193)))


def test_balanced_pixel_loss_weighs_each_crop_by_its_inputs_error():
    from trainer.losses import balanced_pixel_loss
    target = torch.zeros(2, 3, 8, 8)
    blurred = torch.stack([torch.full((3, 8, 8), 0.2), torch.full((3, 8, 8), 0.02)])   # strong and mild blur
    pred = blurred / 2                                   # each crop's error halved: both weigh alike
    assert float(balanced_pixel_loss("l1", pred, target, blurred)) == pytest.approx(0.5)
    assert float(balanced_pixel_loss("mse", pred, target, blurred)) == pytest.approx(0.25)
