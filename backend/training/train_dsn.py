"""Train 1C-DSN on synthetic scenes, bounded by wall time, checkpointed and resumable.

    python -m backend.training.train_dsn --out DIR --minutes M [--resume]
        [--init WEIGHTS] [--first-scene N] [--lr-scale F] [--model-clicks P] [--min-fill F] [--prev-window P]
        [--device cuda] [--workers N] [--batch B] [--realsize-share S] [--realsize-crops K]

DIR/ckpt.pt (full state, atomic), DIR/best.pt (model weights of the best validation score),
DIR/train.log (loss, learning rate, validation IoU after 1 and 3 clicks).

--model-clicks P: for a share P of the crops, the model itself (no gradient) predicts once or
twice and each time a click goes to the centre of its largest mistake, with its prediction as
the previous mask (RITM-style iterative training): the refinement path then learns from the
mistakes the model really makes. The validation score is the mean of the IoU after the first
click and after two such corrective clicks.

--realsize-share S: a share S of every batch's crops comes from real-size scenes (issue 23:
12-MP photos with small objects, synth.RealSizeGenerator("train")), framed as the daemon frames
a click on a big photo (samples.realsize_sample: the whole-image pass's scale, the small-object
probe window, zoom-in windows), K crops per scene (--realsize-crops); the rest are the usual
crops. Real-size scene i of the stream is RealSizeGenerator("train").scene(SEED + i), indexed
like the usual scenes (from --first-scene, kept in the checkpoint). --workers N DataLoader
processes make the samples, split between the two streams by their cost per step (a real-size
scene costs ~4 standard scenes). --batch B crops per step (default 8). Defaults keep the runs
before them as they were (8 crops, 1 worker, no real-size crops); --resume with the same
--batch and --realsize-share.
Sources: /usr/share, or SIMPSON_SOURCE_ROOT (a pack: backend/training/pack_sources.py).
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

# Passive OpenMP waiting: on a shared 2-core machine spinning threads cost 3-4x wall time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..models.dsn import DistractorSegmenter, build_dsn_lite0, click_maps
from .samples import REFINE_SHARE, Sample, error_click, make_sample, pick_instance, realsize_sample
from .synth import RealSizeGenerator, Scene, SceneGenerator

SEED = 20260423
CROP = 320
SCENES_PER_BATCH = 4
SAMPLES_PER_SCENE = 2  # batch = 8 crops
VAL_SCENES = 100
LR_DECODER = 5e-4
LR_BACKBONE = 1.5e-4
WARMUP_STEPS = 100
CKPT_EVERY_S = 300
AUX_WEIGHT = 0.4
FROZEN = ("_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.", "_blocks.2.")  # stride 2-4 ImageNet layers
# seconds of one worker per standard scene (2 crops) and per real-size scene plus per crop of it,
# measured on the shared 2-core machine (0.32 s; 1.3 s + 0.1 s per crop): the workers' split
STD_SCENE_S, RS_SCENE_S, RS_CROP_S = 0.32, 1.3, 0.1


class _Scenes(Dataset):
    """Items from training scenes SEED + i; the generator is made in the worker that first needs it."""

    def __init__(self, length: int, min_fill: float, prev_window: float, refine_share: float = REFINE_SHARE):
        self.length = length
        self.min_fill, self.prev_window, self.refine_share = min_fill, prev_window, refine_share
        self.gen: SceneGenerator | None = None

    def __len__(self) -> int:
        return self.length

    def _generator(self) -> SceneGenerator:
        raise NotImplementedError

    def _scene(self, i: int, rng: np.random.Generator) -> Scene:
        """Training scene SEED + i, or (rarely, when it holds no object) one drawn from rng."""
        if self.gen is None:
            self.gen = self._generator()
        scene = self.gen.scene(SEED + i)
        while not scene.masks:
            scene = self.gen.scene(int(rng.integers(1 << 30)))
        return scene


class TrainScenes(_Scenes):
    """Item i = SAMPLES_PER_SCENE crops from training scene SEED + i (deterministic)."""

    def __init__(self, length: int = 10 ** 9, min_fill: float = 0.005, prev_window: float = 0.0,
                 refine_share: float = REFINE_SHARE):
        super().__init__(length, min_fill, prev_window, refine_share)

    def _generator(self) -> SceneGenerator:
        return SceneGenerator("train")

    def __getitem__(self, i: int) -> list[Sample]:
        rng = np.random.default_rng([SEED, i])
        scene = self._scene(i, rng)
        return [make_sample(scene, pick_instance(scene, rng), rng, CROP, min_fill=self.min_fill,
                            prev_window=self.prev_window, refine_share=self.refine_share)
                for _ in range(SAMPLES_PER_SCENE)]


class RealSizeScenes(_Scenes):
    """Item i = `crops` daemon-view crops of real-size training scene SEED + i (deterministic)."""

    def __init__(self, crops: int = 4, length: int = 10 ** 9, min_fill: float = 0.002, prev_window: float = 0.0,
                 scale: float = 1.0, refine_share: float = REFINE_SHARE):
        super().__init__(length, min_fill, prev_window, refine_share)
        self.crops, self.scale = crops, scale

    def _generator(self) -> SceneGenerator:
        return RealSizeGenerator("train", scale=self.scale)

    def __getitem__(self, i: int) -> list[Sample]:
        rng = np.random.default_rng([SEED, 23, i])
        scene = self._scene(i, rng)
        return [realsize_sample(scene, rng, CROP, min_fill=self.min_fill, prev_window=self.prev_window,
                                refine_share=self.refine_share) for _ in range(self.crops)]


def split_batch(batch: int, share: float, crops: int) -> tuple[int, int]:
    """(standard scenes, real-size scenes) per step for `batch` crops, `share` of them real-size."""
    n_rs = int(round(batch * share / crops)) if share > 0 else 0
    n_std = (batch - n_rs * crops) // SAMPLES_PER_SCENE
    if n_rs * crops + n_std * SAMPLES_PER_SCENE != batch or (n_rs == 0 and n_std == 0):
        raise ValueError(f"batch {batch} cannot be {share:.0%} real-size scenes of {crops} crops "
                         f"and standard scenes of {SAMPLES_PER_SCENE}")
    return n_std, n_rs


def split_workers(workers: int, n_std: int, n_rs: int, crops: int) -> tuple[int, int]:
    """DataLoader workers for each stream, by its generation cost per step (at least 1 each in use)."""
    if n_rs == 0:
        return workers, 0
    if n_std == 0:
        return 0, workers
    cost_std, cost_rs = n_std * STD_SCENE_S, n_rs * (RS_SCENE_S + crops * RS_CROP_S)
    w_rs = min(max(1, round(workers * cost_rs / (cost_std + cost_rs))), max(workers - 1, 1))
    return max(workers - w_rs, 1), w_rs


def collate(items: list[list[Sample]]) -> Sample:
    flat = [s for group in items for s in group]
    return Sample(*(torch.stack(t) for t in zip(*flat)))


def val_set(n: int = VAL_SCENES) -> Sample:
    """Fixed first-click validation crops from held-out backgrounds and objects."""
    gen = SceneGenerator("val")
    out = []
    for i in range(n):
        rng = np.random.default_rng([SEED, 7, i])
        scene = gen.scene(i)
        if not scene.masks:
            continue
        out.append(make_sample(scene, pick_instance(scene, rng), rng, CROP, refine=False))
    return collate([out])


def worker_init(_: int) -> None:
    import cv2
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice; logits are upsampled to the target's resolution."""
    logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def set_train(model: DistractorSegmenter) -> None:
    """Decoder trains; the backbone's BatchNorm statistics stay frozen (batch of 8)."""
    model.train()
    for m in model.backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


@torch.no_grad()
def model_clicks(model: DistractorSegmenter, b: Sample, iters: list[int], rng: np.random.Generator) -> Sample:
    """Crop k gets iters[k] rounds of: predict, click at the largest mistake, prediction → prev."""
    idx = [k for k, n in enumerate(iters) if n > 0]
    if not idx:
        return b
    model.eval()
    sub = Sample(*(t[idx] for t in b))
    feats = model.encode(sub.image)
    pos, neg, prev = sub.pos.clone(), sub.neg.clone(), sub.prev.clone()
    size = sub.target.shape[-2:]
    for r in range(max(iters)):
        logits, _ = model.decode(feats, pos, neg, prev)
        pred = (F.interpolate(logits, size=size, mode="bilinear", align_corners=False) > 0).cpu().numpy()
        for j, k in enumerate(idx):
            if iters[k] <= r:
                continue
            p = error_click(sub.target[j, 0].cpu().numpy() > 0.5, pred[j, 0], rng)
            if p is None:
                continue
            cp, cn = click_maps([p], *size)
            pos[j] = torch.maximum(pos[j], cp.to(pos.device))
            neg[j] = torch.maximum(neg[j], cn.to(neg.device))
            prev[j, 0] = torch.from_numpy(pred[j, 0].astype(np.float32)).to(prev.device)
    out = {"pos": b.pos.clone(), "neg": b.neg.clone(), "prev": b.prev.clone()}
    out["pos"][idx], out["neg"][idx], out["prev"][idx] = pos, neg, prev
    return b._replace(**out)


def iou_of(model: DistractorSegmenter, s: Sample) -> torch.Tensor:
    logits, _ = model(s.image, s.pos, s.neg, s.prev)
    pred = F.interpolate(logits, size=s.target.shape[-2:], mode="bilinear", align_corners=False) > 0
    gt = s.target > 0.5
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float().clamp(min=1)
    return (inter / union).cpu()


@torch.no_grad()
def evaluate(model: DistractorSegmenter, val: Sample, device: torch.device, batch: int = 10) -> tuple[float, float]:
    """Mean IoU after the first click and after two corrective clicks (fixed click seeds)."""
    model.eval()
    first, third = [], []
    for i in range(0, len(val.image), batch):
        s = Sample(*(t[i:i + batch].to(device) for t in val))
        first.append(iou_of(model, s))
        s = model_clicks(model, s, [2] * len(s.image), np.random.default_rng([SEED, 3, i]))
        third.append(iou_of(model, s))
    return float(torch.cat(first).mean()), float(torch.cat(third).mean())


def lr_factor(step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Log:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, required=True, help="wall-time budget of this invocation")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    ap.add_argument("--plan-minutes", type=float, default=None,
                    help="length of the LR schedule (default: --minutes of the first run)")
    ap.add_argument("--init", type=Path, default=None, help="start from these model weights (a new run)")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="multiplies both learning rates")
    ap.add_argument("--model-clicks", type=float, default=0.0,
                    help="share of crops given 1-2 corrective clicks at the model's own mistakes")
    ap.add_argument("--min-fill", type=float, default=0.005,
                    help="smallest object share of a training crop (the coarse pass sees small objects smaller)")
    ap.add_argument("--refine-share", type=float, default=REFINE_SHARE,
                    help="share of crops with a previous mask and corrective clicks (0: first clicks only, "
                         "for the first-click model; --model-clicks should then be 0)")
    ap.add_argument("--prev-window", type=float, default=0.0,
                    help="share of refinement crops framed on the previous mask, as the daemon frames them")
    ap.add_argument("--first-scene", type=int, default=0,
                    help="index of the first training scene of a new run: a fine-tune from --init sees fresh "
                         "scenes instead of replaying those its starting weights were trained on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when there is one)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader processes making the samples")
    ap.add_argument("--batch", type=int, default=SCENES_PER_BATCH * SAMPLES_PER_SCENE, help="crops per step")
    ap.add_argument("--realsize-share", type=float, default=0.0,
                    help="share of each batch's crops from real-size scenes (12-MP photos, small objects)")
    ap.add_argument("--realsize-crops", type=int, default=4, help="crops per real-size scene")
    ap.add_argument("--val-scenes", type=int, default=VAL_SCENES,
                    help="held-out first-click crops scored at each checkpoint (0: none, no best.pt)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--ckpt-every", type=float, default=CKPT_EVERY_S, help="seconds between checkpoints")
    args = ap.parse_args(argv)

    t_start = time.monotonic()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    n_std, n_rs = split_batch(args.batch, args.realsize_share, args.realsize_crops)
    w_std, w_rs = split_workers(args.workers, n_std, n_rs, args.realsize_crops)
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "train.log")

    model = build_dsn_lite0(pretrained_backbone=args.init is None).to(device)
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location=device, weights_only=True))
    # NHWC layout: the same maths, 1.4x the steps a minute on this machine's CPU (twenty-fifth session)
    model = model.to(memory_format=torch.channels_last)
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(not name.startswith(FROZEN))
    opt = torch.optim.AdamW([
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": LR_BACKBONE},
        {"params": model.decoder.parameters(), "lr": LR_DECODER},
    ], weight_decay=1e-4)
    base_lrs = [LR_BACKBONE * args.lr_scale, LR_DECODER * args.lr_scale]
    step, elapsed_before, best, plan_s = 0, 0.0, -1.0, (args.plan_minutes or args.minutes) * 60
    first_scene = args.first_scene
    ckpt_path = args.out / "ckpt.pt"
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed_before, best, plan_s = ck["step"], ck["elapsed"], ck["best"], ck["plan_s"]
        first_scene = int(ck.get("first_scene", 0))
        if args.plan_minutes:
            plan_s = args.plan_minutes * 60
        log(f"resumed at step {step}, {elapsed_before / 60:.1f} min done of a {plan_s / 60:.1f} min plan, best val IoU {best:.4f}")
    else:
        log(f"start: device {device}, seed {SEED}, plan {plan_s / 60:.1f} min, crop {CROP}, "
            f"batch {args.batch}, init {args.init}, lr x{args.lr_scale}, "
            f"model clicks {args.model_clicks}, refine share {args.refine_share}, min fill {args.min_fill}, prev window {args.prev_window}, "
            f"first scene {first_scene}")
    sources = SceneGenerator("train")
    log(f"sources: {len(sources.backgrounds)} backgrounds + {len(sources.objects)} objects" if not sources.procedural else
        "sources: PROCEDURAL ONLY: the Debian image packages (docs/models.md, 'Sources and licences') are missing "
        "or SIMPSON_SOURCE_ROOT is wrong; these scenes are not the ones the shipped models were trained on")
    log(f"batch {args.batch} crops: {n_std} standard scenes x {SAMPLES_PER_SCENE} + {n_rs} real-size scenes x "
        f"{args.realsize_crops}; workers {w_std} + {w_rs}")

    def loader(data: Dataset, scenes: int, workers: int):
        return iter(DataLoader(data, batch_size=scenes, collate_fn=collate,
                               sampler=range(first_scene + step * scenes, 10 ** 9), num_workers=workers,
                               worker_init_fn=worker_init, prefetch_factor=4, persistent_workers=True,
                               multiprocessing_context="spawn"))
    # the workers start making samples while the validation crops are made
    streams = []
    if n_std:
        streams.append(loader(TrainScenes(min_fill=args.min_fill, prev_window=args.prev_window,
                                          refine_share=args.refine_share), n_std, w_std))
    if n_rs:
        streams.append(loader(RealSizeScenes(args.realsize_crops, min_fill=min(args.min_fill, 0.002),
                                           prev_window=args.prev_window, refine_share=args.refine_share), n_rs, w_rs))
    val = val_set(args.val_scenes) if args.val_scenes > 0 else None   # 0: no validation sources at hand
    log(f"validation: {len(val.image) if val is not None else 0} crops from held-out scenes "
        f"({time.monotonic() - t_start:.0f} s)")

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - t_start

    def checkpoint(tag: str) -> None:
        nonlocal best
        iou1, iou3 = evaluate(model, val, device) if val is not None else (float("nan"), float("nan"))
        iou = (iou1 + iou3) / 2
        set_train(model)
        if iou > best:   # never without validation (NaN): best.pt is then not written
            best = iou
            atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, args.out / "best.pt")
        atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                     "elapsed": elapsed(), "best": best, "plan_s": plan_s, "first_scene": first_scene}, ckpt_path)
        log(f"{tag} step {step} ({elapsed() / 60:.1f} min): val IoU@1 {iou1:.4f} @3 {iou3:.4f} "
            f"score {iou:.4f} (best {best:.4f}); checkpoint saved")

    if args.init is not None and step == 0:
        checkpoint("initial")
    set_train(model)
    click_rng = np.random.default_rng([SEED, 11, first_scene + step])
    deadline = t_start + args.minutes * 60
    last_ckpt = time.monotonic()
    run_loss, n_loss, t_data, t_iter = 0.0, 0, 0.0, time.monotonic()
    while time.monotonic() < deadline and elapsed() < plan_s:
        t0 = time.monotonic()
        parts = [next(it) for it in streams]
        b = Sample(*(torch.cat(t) for t in zip(*parts))) if len(parts) > 1 else parts[0]
        t_data += time.monotonic() - t0
        b = Sample(*(t.to(device, non_blocking=True) for t in b))
        b = b._replace(image=b.image.contiguous(memory_format=torch.channels_last))
        if args.model_clicks > 0:
            iters = [int(click_rng.integers(1, 3)) if click_rng.random() < args.model_clicks else 0
                     for _ in range(len(b.image))]
            b = model_clicks(model, b, iters, click_rng)
            set_train(model)
        f = lr_factor(step, elapsed() / plan_s)
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * f
        logits2, logits4 = model(b.image, b.pos, b.neg, b.prev)
        loss = loss_fn(logits2, b.target) + AUX_WEIGHT * loss_fn(logits4, b.target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
        opt.step()
        step += 1
        run_loss += float(loss.detach())
        n_loss += 1
        if step % args.log_every == 0:
            dt = (time.monotonic() - t_iter) / n_loss
            log(f"step {step} loss {run_loss / n_loss:.4f} lr {opt.param_groups[1]['lr']:.2e} "
                f"{dt:.2f} s/it (data wait {t_data / n_loss:.2f}), {len(b.image) / dt:.1f} crops/s")
            run_loss, n_loss, t_data, t_iter = 0.0, 0, 0.0, time.monotonic()
        if time.monotonic() - last_ckpt >= args.ckpt_every:
            checkpoint("periodic")
            last_ckpt = time.monotonic()
    for it in streams:  # stop the workers before the last save
        try:
            it._shutdown_workers()  # type: ignore[attr-defined]
        except RuntimeError as e:  # a worker that dies on the way out must not cost the final checkpoint
            log(f"stopping the sample workers: {e}")
    checkpoint("final")
    log(f"done: {step} steps, {elapsed() / 60:.1f} min, best val IoU {best:.4f}")


if __name__ == "__main__":
    main()
