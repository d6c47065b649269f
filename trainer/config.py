"""``TrainConfig``: everything that defines a training run. Saved inside every checkpoint and model file."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from shared.architectures import FRONT_END_RADIUS, WIENER_FRONT_END

DEFAULT_STUDENT = "student-s2d-hint"  # what a run without --arch or a preset trains; the shipped default is
                                      # the realistic preset's arch (models/README.md)


@dataclass
class TrainConfig:
    arch: str = DEFAULT_STUDENT          # network to train: a student name or "teacher"
    data: list[str] = field(default_factory=list)       # folders of sharp images (DIV2K layout understood)
    val_data: list[str] = field(default_factory=list)   # validation folders; empty = DIV2K_valid_HR or a split
    val_fraction: float = 0.15           # share of images held out when no validation folder exists
    crop: int = 384                      # random training crop, pixels (as in the original)
    batch_size: int = 16
    epochs: int = 100
    patches_per_image: int = 4           # crops drawn from each training image per epoch
    flat_crop_prob: float = 0.0          # chance that a crop is the flattest of ``FLAT_CANDIDATES`` positions in
                                         # its region (least mean gradient of the sharp region): smooth sky,
                                         # bokeh and skin, where added grain shows, are seen more often
    lr: float = 1e-3                     # Adam learning rate, cosine-annealed to lr_min
    lr_min: float = 1e-5
    warmup_steps: int = 500              # linear warm-up from lr/100: full-rate first steps kill ReLUs
    weight_decay: float = 0.0
    pixel_loss: str = "l1"               # "l1" or "mse", to the sharp ground truth
    balance_sigma: bool = False          # divide each crop's pixel loss by its blurred input's, so mild blur
                                         # weighs as much as strong blur (strong blur dominates a plain mean)
    init_from: str | None = None         # start from this model file's weights (fine-tuning)
    loss_margin: int = -1                # pixels at each crop border left out of the loss; -1: the Wiener front
                                         # end's radius for networks that have one (its output there is made
                                         # from reflected pixels, which whole images and tiles never see)
    w_pixel: float = 1.0
    w_ssim: float = 0.0                  # weight of (1 - SSIM) to the ground truth: rewards the local contrast
                                         # a pixel loss alone smooths away
    w_no_harm: float = 0.0               # weight of the pixel error a crop has beyond what the network starts from
                                         # (its Wiener front end's output, or the input): "first, do no harm"
    no_harm_floor: str = "front-end"     # what the no-harm term charges against: "front-end" (the Wiener front
                                         # end's output) or "better" (per crop, the better of it and the input:
                                         # the input wins on sharp crops, which the front end over-sharpens)
    w_no_harm_ssim: float = 0.0          # weight of the SSIM a crop loses against its degraded input (zero for a
                                         # crop not made worse): the evaluation's own harm, which a pixel error
                                         # barely sees when grain is added to a flat area
    w_output_kd: float = 0.0             # student output vs teacher output (needs teacher)
    w_feature_kd: float = 0.0            # ResNet18 features of student output vs those of the teacher output
                                         # (of the ground truth when no teacher is given)
    feature_layers: tuple[int, ...] = (1, 2)
    feature_init: str = "auto"           # ResNet18 feature extractor: auto | imagenet | random
    teacher: str | None = None           # path of a trained teacher model file
    teacher_init: str = "auto"           # teacher encoder init when training the teacher
    degradation: str = "gaussian"        # "gaussian": Gaussian blur from sigma_min..max with the noise/jpeg
                                         # options below; "realistic": shared.degrade.REALISTIC (every blur
                                         # family, sensor noise, JPEG), validated on shared.degrade.EVAL_FAMILIES
    sigma_min: float = 0.5               # Gaussian blur σ range drawn per crop
    sigma_max: float = 3.0
    hint_jitter: float = 0.1             # a hinted network is told σ·exp(N(0, hint_jitter²)) in training: the
                                         # blur estimator's RMS error in log σ on unseen photos is about 0.1;
                                         # noise readings are measured on the crop's region itself
    hint_source: str = "true"            # σ hint in training: "true" (the true σ with hint_jitter) or "estimate"
                                         # (the shipped blur estimator's reading of the degraded crop region,
                                         # with its biases: e.g. sharp photos read ≈ 0.45, as at inference)
    blur_estimator: str | None = None    # with hint_source "estimate": this estimator file reads the crops
                                         # (default: the shipped models/blur-estimator.pt, as at inference)
    sigma_skew: float = 1.0              # >1 draws mild blur more often (σ = min + range·u^skew)
    noise_prob: float = 0.0              # chance of mild Gaussian noise, std up to noise_max
    noise_max: float = 0.01
    jpeg_prob: float = 0.0               # chance of JPEG re-compression (quality 90..100)
    val_sigmas: tuple[float, ...] = (1.0, 2.0, 3.0)
    val_max_side: int = 512              # validation images are centre-cropped to this to bound eval time
    time_budget_min: float = 0.0         # >0: after epoch 1, set epochs so the run takes about this long
    checkpoint_every: int = 10           # epochs between checkpoints (the last epoch is always saved)
    stop_after: int = 0                  # >0: checkpoint after this epoch and stop (resume later, the schedule
                                         # following ``epochs``): replays a run that was resumed with new epochs
    seed: int = 0
    workers: int = 0                     # DataLoader worker processes
    device: str = "auto"
    amp: bool = True                     # bf16 autocast on CUDA
    preset: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: (tuple(v) if k in ("feature_layers", "val_sigmas") else v) for k, v in d.items() if k in names}
        return cls(**d)


PRESETS: dict[str, dict] = {
    # The original project: the seed student, MSE, ResNet18-feature distillation, Adam 1e-4, 384 crops.
    "original": dict(arch="student-seed", pixel_loss="mse", w_feature_kd=1.0, lr=1e-4, lr_min=1e-4, crop=384),
    # Our student trained on the ground truth alone (no teacher): the "without distillation" row.
    "plain": dict(w_output_kd=0.0, w_feature_kd=0.0),
    # Our student distilled from a teacher (pass --teacher): output and feature distillation.
    "distill": dict(w_output_kd=1.0, w_feature_kd=0.05),
    "teacher": dict(arch="teacher", lr=2e-4, lr_min=1e-6, batch_size=16),
    # The shipped default's recipe: the lean bank student on every blur family with noise and JPEG, told the
    # blur estimator's own readings, charged for crops it makes worse than its front end (models/train-shipped.sh
    # starts it --init-from the bank student, pruned, and distils it from that: --teacher FILE --w-output-kd 1;
    # a retraining run continues the active model).
    "realistic": dict(arch="student-s2d-wbank-lean", degradation="realistic", hint_source="estimate", w_ssim=0.2,
                      w_no_harm=1.0, crop=192, batch_size=12, lr=3e-4, lr_min=1e-5, warmup_steps=200),
}


def loss_margin(cfg: TrainConfig) -> int:
    """Pixels at each crop border left out of the loss: ``cfg.loss_margin``, or (-1) the Wiener front end's
    radius for the networks that have one."""
    if cfg.loss_margin >= 0:
        return cfg.loss_margin
    return FRONT_END_RADIUS if cfg.arch in WIENER_FRONT_END else 0


def check_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg``, or ValueError naming what cannot train (asked before a run is queued, and by the loop)."""
    margin = loss_margin(cfg)
    if margin and cfg.crop <= 2 * margin + 8:
        raise ValueError(f"a crop of {cfg.crop} px leaves nothing inside the loss margin of {margin} px that "
                         f"{cfg.arch} needs: use a crop of at least {2 * margin + 9} px")
    if cfg.no_harm_floor not in ("front-end", "better"):
        raise ValueError(f"unknown no-harm floor {cfg.no_harm_floor!r}: use front-end or better")
    return cfg


def make_config(preset: str | None = None, **overrides) -> TrainConfig:
    """A TrainConfig from an optional preset and explicit overrides (None values are ignored)."""
    values: dict = {}
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
        values["preset"] = preset
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(values)
