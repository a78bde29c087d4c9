"""One training loop for float models and for QAT fine-tuning.

Float training and QAT fine-tuning differ only in the model handed in: a QAT variant (`models.qat.to_qat`,
calibrated, quantization on) trains with fake quantization and a straight-through estimator, starting from the
float weights and calibrated ranges. Everything else is shared:

- windows drawn fresh every epoch from the training recordings (seeded by seed + epoch, so a resumed run
  draws what an uninterrupted one would), half of them centred on labelled events (`calibration.data`), and,
  unless `augment=False`, each rotated, scaled, time-warped and noised (`calibration.data.Augment`, same seeded
  generator) so the model does not learn one sensor angle or cadence; validation windows are never augmented;
- masked BCE on per-patch logits, loss = sum(BCE * mask) / sum(mask), where the mask is the Kaggle defog
  `Valid & Task` (and zero padding past a recording's end) — the 1st-place loss (reference/fog-domain.md 2.4);
- Adam (beta 0.9/0.98, eps 1e-9) with linear warm-up then a constant rate (fog-domain 2.5), gradient clipping;
- validation on held-out subjects with the competition metric (mean over classes of per-sample average
  precision over the pooled validation recordings, masked), through `deploy.offline.predict_prepared`, the
  same hop grid the device runs;
- early stopping on validation mAP, `last.pt` (everything needed to resume) and `best.pt` (a plain state_dict)
  in the output folder, and a progress line on stderr.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from calibration import progress as bars
from calibration.data import Augment, PreparedRecording, as_spec, cut_windows, prepare_recording, sample_starts
from deploy.errors import FogError


@dataclass
class TrainConfig:
    epochs: int = 40
    steps_per_epoch: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    patience: int = 8               # epochs without a better validation mAP before stopping
    seed: int = 0
    class_share: float = 0.5        # share of training windows centred on a labelled event
    by_episode: bool = False        # centred on an episode drawn uniformly (short freezes as often as long ones)
    val_hop_patches: int | None = None   # validation hop in patches (default: half a window)
    augment: bool | dict = True     # training windows only: rotation, scale, time warp, noise (data.Augment; a
    #                                 dict: Augment's fields, e.g. {"lowpass": [0.5, 10, 20]})
    keep: str = "best"              # weights returned: "best" by validation, or "last" (a fixed schedule)
    select: str = "map"             # validation figure for "best": "map" (per class) or "any_ap" (any FOG)
    end_weight: float = 0.0         # the loss of the patches in the window's last END_S seconds weighs 1 + this:
    #                                 the device reads a window's end (its look-ahead), training weighs all alike


@dataclass
class TrainResult:
    best_map: float | None
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list = field(default_factory=list)
    stopped_early: bool = False


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(BCE * mask) / sum(mask); zero (with a gradient) when nothing in the batch counts."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def fog_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, typed=None) -> torch.Tensor:
    """`masked_bce` per class, except for windows whose labels are one untyped "freeze" label (Daphnet): there
    the loss is on any-FOG, BCE of the largest class logit against the label (the model may call a freeze
    whichever type it judges; all of them are pushed down where nobody froze). An untyped patch weighs as
    much as a typed one (its mask counts once per class)."""
    if typed is None or bool(typed.all()):
        return masked_bce(logits, targets, mask)
    typed = typed.view(-1, 1, 1).to(logits.dtype)
    n_classes = logits.shape[-1]
    per_class = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * mask * typed
    any_logit, any_target = logits.max(-1).values, targets.max(-1).values
    any_mask = mask.min(-1).values * (1 - typed[..., 0]) * n_classes
    per_any = F.binary_cross_entropy_with_logits(any_logit, any_target, reduction="none") * any_mask
    return (per_class.sum() + per_any.sum()) / (mask * typed).sum().add(any_mask.sum()).clamp_min(1.0)


END_S = 2.0   # TrainConfig.end_weight's span: the device's 1 s look-ahead reads about the last 1.5 s of a window


def end_weights(n_patches: int, patch_s: float, end_weight: float) -> np.ndarray:
    """(1, n_patches, 1) loss weights: 1, and 1 + end_weight for the patches of the last END_S seconds."""
    weights = np.ones((1, n_patches, 1), np.float32)
    weights[:, n_patches - max(1, int(round(END_S / patch_s))):] += end_weight
    return weights


def augmenter(augment: bool | dict) -> Augment | None:
    """TrainConfig.augment as an Augment: True -> the defaults, a dict -> Augment(**dict), False -> None."""
    if isinstance(augment, dict):
        return Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()})
    return Augment() if augment else None


def warmup_constant(warmup_steps: int):
    return lambda step: min(1.0, (step + 1) / max(1, warmup_steps))


def subject_of(recording) -> str:
    """A recording's subject: a PreparedRecording's, else meta["subject"] (deploy.subjects), else its name."""
    return str(getattr(recording, "subject", None) or recording.meta.get("subject") or recording.meta.get("name")
               or id(recording))


def split_by_subject(recordings, val_subjects=None, val_fraction: float = 0.25, seed: int = 0):
    """(train, val) lists with no subject in both. Subjects come from `meta["subject"]` (else the recording)."""
    subject = subject_of
    subjects = sorted({subject(r) for r in recordings})
    if val_subjects is None:
        rng = np.random.default_rng(seed)
        n_val = max(1, int(round(len(subjects) * val_fraction)))
        if n_val >= len(subjects):
            raise FogError(f"only {len(subjects)} subject(s): a held-out split needs at least two "
                           "(give more recordings or explicit validation recordings)")
        val_subjects = set(rng.choice(subjects, n_val, replace=False).tolist())
    val_subjects = {str(s) for s in val_subjects}
    train = [r for r in recordings if subject(r) not in val_subjects]
    val = [r for r in recordings if subject(r) in val_subjects]
    if not train or not val:
        raise FogError(f"validation subjects {sorted(val_subjects)} leave an empty train or validation set")
    return train, val


def froze(recording) -> int:
    """Labelled FOG samples of a recording where they count (its mask); 0 without labels."""
    labels = getattr(recording, "labels", None)
    if labels is None:
        return 0
    fog = np.asarray(labels).max(axis=1) > 0.5
    mask = getattr(recording, "mask", None)
    return int((fog & np.asarray(mask, bool)).sum() if mask is not None else fog.sum())


def check_validation(train, val) -> None:
    """Refuse, before any epoch, a validation set on which no epoch can be chosen: nobody in it froze (AP is
    undefined: "best validation mAP None" and an empty curve). Names the subjects who did, the fix."""
    if any(froze(r) for r in val):
        return
    held = sorted({subject_of(r) for r in val})
    frozen = sorted({subject_of(r) for r in train if froze(r)})
    labelled = any(getattr(r, "labels", None) is not None for r in val)
    raise FogError(f"the validation subjects {held} {'never froze in these recordings' if labelled else 'have no labels'}"
                   ": validation AP is undefined, so no epoch could be chosen as the best; hold out subjects who froze "
                   f"with --val-subjects (here: {', '.join(frozen) or 'nobody froze'}), or another --seed or "
                   "--val-fraction")


def make_infer(model, batch_size: int = 64):
    """numpy (B, *input) -> sigmoid probabilities (B, n_patches, C), padding to a QAT variant's fixed batch."""
    from calibration.ptq import predict_probs

    def infer(x):
        return predict_probs(model, np.asarray(x, dtype=np.float32), batch_size)
    return infer


def evaluate(model, recordings, spec, hop_samples: int | None = None) -> dict:
    """Competition mAP (and AP per class) over recordings labelled with the three types, and any-FOG AP over
    every labelled recording (max over classes vs any label), per sample, masked."""
    from deploy.metrics import average_precision, competition_map
    from deploy.offline import predict_prepared

    spec = as_spec(spec)
    hop = hop_samples or spec.window // 2
    infer = make_infer(model)
    probs, labels, masks, typed = [], [], [], []
    for rec in recordings:
        prep = rec if isinstance(rec, PreparedRecording) else prepare_recording(rec, spec)
        if prep.labels is None:
            continue
        p = predict_prepared(prep.acc, spec, infer, hop)
        n = min(len(p), prep.n_samples)
        probs.append(p[:n])
        labels.append(prep.labels[:n])
        masks.append(prep.mask[:n])
        typed.append(prep.typed)
    if not probs:
        raise FogError("no labelled validation recordings: validation needs labels")
    any_ap = average_precision(np.concatenate([lab.max(1)[m] for lab, m in zip(labels, masks)]) > 0.5,
                               np.concatenate([p.max(1)[m] for p, m in zip(probs, masks)]))
    pick = [i for i, t in enumerate(typed) if t]
    scores = competition_map([labels[i] for i in pick], [probs[i] for i in pick], [masks[i] for i in pick]) \
        if pick else {"mean": float("nan")}
    mean = scores.pop("mean")
    return {"map": None if math.isnan(mean) else mean, "any_ap": None if math.isnan(any_ap) else any_ap,
            "ap": {c: (None if math.isnan(v) else v) for c, v in scores.items()}}


class _RunProgress:
    """One bar over the whole run (epochs x steps: rate and ETA for the run, not just the epoch); a line per epoch."""

    def __init__(self, config: TrainConfig, done_epochs: int, enabled: bool = True):
        self.enabled = enabled
        total = config.epochs * config.steps_per_epoch
        self.bar = bars.bar(total, "train", unit="step", enabled=enabled,
                                initial=done_epochs * config.steps_per_epoch)

    def step(self, epoch, epochs, loss, lr):
        self.bar.set_postfix_str(f"epoch {epoch}/{epochs} loss {loss:.4f} lr {lr:.2e}", refresh=False)
        self.bar.update(1)

    def line(self, text):
        bars.write(text, self.enabled)

    def close(self):
        self.bar.close()


def _load_resumable(path: Path) -> dict:
    """last.pt holds only tensors and plain containers (state and config go through JSON when saved), so it loads with
    weights_only=True: a crafted file in a run folder cannot run code on --resume."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError (or RuntimeError) for anything beyond plain data
        raise FogError(f"{path}: not a plain resumable checkpoint ({str(exc).splitlines()[0][:160]}); refusing to "
                       "load it (it may hold code). Delete it to start afresh, or resume from a run folder this "
                       "toolkit wrote") from None


def fit(model, train_recordings, val_recordings, spec, config: TrainConfig = TrainConfig(),
        out_dir=None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train `model` (float, or a calibrated QAT variant with quantization on) in place; returns the history.

    On return the model holds the best weights by validation mAP. With `out_dir`, `last.pt` is written after
    every epoch and `resume=True` continues from it.
    """
    spec = as_spec(spec)
    fixed = getattr(model, "qat_batch_size", None)
    if fixed and fixed != config.batch_size:
        raise FogError(f"this QAT variant has a fixed batch of {fixed}; train it with batch_size={fixed}")
    torch.manual_seed(config.seed)
    train = [r if isinstance(r, PreparedRecording) else prepare_recording(r, spec) for r in train_recordings]
    if not any(r.labels is not None for r in train):
        raise FogError("training needs labelled recordings (labels per sample)")
    train = [r for r in train if r.labels is not None]
    val = [r if isinstance(r, PreparedRecording) else prepare_recording(r, spec) for r in val_recordings]
    hop = (config.val_hop_patches or spec.n_patches // 2) * spec.patch
    # per-class mAP needs validation labelled with the three types; untyped freezes (Daphnet) select on any-FOG AP
    select = config.select if any(v.typed and v.labels is not None for v in val) else "any_ap"

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98), eps=1e-9,
                                 weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_constant(config.warmup_steps))
    out = Path(out_dir) if out_dir else None
    state = {"epoch": 0, "best_map": None, "best_epoch": 0, "history": [], "since_best": 0, "seconds": 0.0}
    best_state = None
    if out and resume and (out / "last.pt").exists():
        saved = _load_resumable(out / "last.pt")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = saved["state"]
        torch.set_rng_state(saved["torch_rng"])        # dropout continues as in an uninterrupted run
        if (out / "best.pt").exists():
            best_state = torch.load(out / "best.pt", weights_only=True)
    bar = _RunProgress(config, state["epoch"], enabled=progress)
    started = time.perf_counter() - state["seconds"]
    stopped_early = False
    augment = augmenter(config.augment)
    loss_weights = end_weights(spec.n_patches, spec.patch / spec.rate_hz, config.end_weight)   # ones without it
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["since_best"] >= config.patience:
            stopped_early = True
            break
        rng = np.random.default_rng([config.seed, epoch])
        model.train()
        losses = []
        for step in range(1, config.steps_per_epoch + 1):
            batch = cut_windows(train, sample_starts(train, spec.window, config.batch_size, rng,
                                                     config.class_share, config.by_episode), spec,
                                augment=augment, rng=rng)
            logits = model(torch.from_numpy(batch.x))
            loss = fog_loss(logits, torch.from_numpy(batch.labels), torch.from_numpy(batch.mask * loss_weights),
                            None if batch.typed is None else torch.from_numpy(batch.typed))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.step(epoch, config.epochs, float(np.mean(losses)), schedule.get_last_lr()[0])
        scores = evaluate(model, val, spec, hop)
        val_map = scores[select]
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_map": val_map,
               "val_ap": scores.get("ap"), "seconds": round(time.perf_counter() - started, 1)}
        state["history"].append(row)
        improved = val_map is not None and (state["best_map"] is None or val_map > state["best_map"])
        if improved:
            state.update(best_map=val_map, best_epoch=epoch, since_best=0)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["since_best"] += 1
        state["epoch"], state["seconds"] = epoch, time.perf_counter() - started
        bar.line(f"epoch {epoch}/{config.epochs}: loss {row['train_loss']:.4f}, val mAP "
                 f"{_fmt(val_map)} (best {_fmt(state['best_map'])} @ {state['best_epoch']}), "
                 f"{row['seconds']:.0f} s")
        if out:
            out.mkdir(parents=True, exist_ok=True)
            if improved:
                torch.save(best_state, out / "best.pt")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "state": json.loads(json.dumps(state)),
                        "config": json.loads(json.dumps(asdict(config))),
                        "torch_rng": torch.get_rng_state()},
                       out / "last.pt")
            (out / "history.json").write_text(json.dumps(state["history"], indent=1) + "\n")
    bar.close()
    if best_state is not None and config.keep == "best":
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_map=state["best_map"], best_epoch=state["best_epoch"], epochs_run=state["epoch"],
                       seconds=time.perf_counter() - started, history=state["history"],
                       stopped_early=stopped_early or state["since_best"] >= config.patience)


def _fmt(value):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
