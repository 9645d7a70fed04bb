#!/bin/bash
# 1C-DSN fine-tune and paired evaluation on a lent GPU machine (issue 23; docs/models.md, version 7).
#
#   tools/dsn_gpu.sh train   # fine-tune version 6 -> $OUT/dsn-final.pt (+ .sha256), $OUT/train.log
#   W=NEW.pt tools/dsn_gpu.sh eval   # the shipped weights against W on held-out scenes, paired
#   INIT=backend/weights/dsn-first-lite0.pt REFINE=0 MODEL_CLICKS=0 tools/dsn_gpu.sh train   # a first-click model
#   W=NEW.pt CMP=--compare-first tools/dsn_gpu.sh eval   # NEW as the first-click model beside the shipped refiner
#
# That machine has no Debian image packages and no network: the sources travel as packs
# (python -m backend.training.pack_sources), the code as a copy. Layout under CARRY (default
# .devcarry, run from the repository root): code/ (backend, bench, simpson_client), val/ and
# train/ (packs of the two splits, merged into /tmp/src = SIMPSON_SOURCE_ROOT).
# Knobs (environment): MINUTES (6), WORKERS (14), BATCH (16), LR_SCALE (0.2), RS_SHARE (0.5),
# RS_CROPS (4 crops per real-size scene), CHECK (1: a one-scene benchmark check after training),
# RS_N / RS_SHARDS (36 x 12 real-size scenes, seeds 0..), RS_MINUTES (2.8), STD_N (100 per seed
# 10000, 20000, 30000, 40000), STD_MINUTES (60), DEVICE (cuda), INIT (backend/weights/dsn-lite0.pt),
# REFINE (0.35: share of crops with a previous mask), MODEL_CLICKS (0.6), CMP (--compare),
# FIRST_SCENE (2000000: the first training scene; a fine-tune of a fine-tune takes fresh ones).
set -u
R=$PWD
CARRY=${CARRY:-$R/.devcarry}
C=$CARRY/code
OUT=${OUT:-/tmp/dsn-out}
mkdir -p "$OUT" /tmp/src
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE SIMPSON_SOURCE_ROOT=/tmp/src
for part in val train; do [ -d "$CARRY/$part" ] && cp -r "$CARRY/$part/." /tmp/src/; done
[ -e "$C/backend/weights" ] || ln -s "$R/backend/weights" "$C/backend/weights"
DEVICE=${DEVICE:-cuda}
cd "$C" || exit 1

case "${1:-}" in
train)
    nproc; nvidia-smi -L 2>/dev/null; python3 -c "import torch, cv2; print('torch', torch.__version__, 'cv2', cv2.__version__)"
    python3 -m backend.training.train_dsn --out /tmp/run --minutes "${MINUTES:-6}" \
        --init "$R/${INIT:-backend/weights/dsn-lite0.pt}" --first-scene "${FIRST_SCENE:-2000000}" --lr-scale "${LR_SCALE:-0.2}" \
        --model-clicks "${MODEL_CLICKS:-0.6}" --refine-share "${REFINE:-0.35}" --min-fill 0.002 --prev-window 0.5 --device "$DEVICE" --workers "${WORKERS:-14}" \
        --batch "${BATCH:-16}" --realsize-share "${RS_SHARE:-0.5}" --realsize-crops "${RS_CROPS:-4}" \
        --val-scenes "${VAL_SCENES:-100}" --ckpt-every "${CKPT_EVERY:-90}" --log-every 50 --threads 2 \
        2>&1 | tee "$OUT/train.log"
    python3 -m backend.training.export_dsn /tmp/run/ckpt.pt --out "$OUT/dsn-final.pt"
    [ -f /tmp/run/best.pt ] && python3 -m backend.training.export_dsn /tmp/run/best.pt --out "$OUT/dsn-best.pt"
    mkdir -p /tmp/keep && cp "$OUT"/dsn-final.* /tmp/keep/
    # does the benchmark run on this device? (one standard scene, both weights; CHECK=0 skips it)
    [ "${CHECK:-1}" = 0 ] || timeout 90 python3 bench/select.py --n 1 --seed 10000 --max-clicks 2 --threads 1 --device "$DEVICE" \
        --skip "no small-object,coarse + zoom,whole image,no previous,no guided,GrabCut" --compare "$OUT/dsn-final.pt" \
        2>&1 | tail -4
    ;;
eval)
    W=${W:?W=the weights to compare with the shipped ones}
    mkdir -p /tmp/ev
    if ! timeout 90 python3 bench/select.py --n 1 --seed 10000 --max-clicks 2 --threads 1 --device "$DEVICE" \
            --skip "no small-object,coarse + zoom,whole image,no previous,no guided,GrabCut" ${CMP:---compare} "$W"; then
        echo "the benchmark fails on $DEVICE: CPU, fewer standard scenes"; DEVICE=cpu; STD_N=${STD_N_CPU:-30}
    fi
    RS_N=${RS_N:-36}
    for i in $(seq 0 $((${RS_SHARDS:-12} - 1))); do
        python3 bench/select.py --split realsize --n "$RS_N" --seed $((i * RS_N)) --max-clicks 3 --threads 1 \
            --device "$DEVICE" --skip "no small-object" ${CMP:---compare} "$W" --minutes "${RS_MINUTES:-2.8}" \
            --json "/tmp/ev/rs$i.json" > "/tmp/ev/rs$i.txt" 2>&1 &
    done
    for s in 10000 20000 30000 40000; do
        python3 bench/select.py --n "${STD_N:-100}" --seed "$s" --max-clicks 5 --threads 1 --device "$DEVICE" \
            --skip "no small-object,coarse + zoom,whole image,no previous,no guided,GrabCut" ${CMP:---compare} "$W" \
            --minutes "${STD_MINUTES:-60}" --json "/tmp/ev/std$s.json" > "/tmp/ev/std$s.txt" 2>&1 &
    done
    wait
    tail -n +1 /tmp/ev/*.txt > "$OUT/eval.log"
    python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
out = Path(sys.argv[1])
for split, pat in (("realsize", "rs*.json"), ("standard", "std*.json")):
    runs = [json.loads(p.read_text()) for p in sorted(Path("/tmp/ev").glob(pat), key=lambda p: int(p.stem.strip("rstd")))]
    merged: dict = {"split": split, "seeds": [r["seed"] for r in runs], "scenes": [r["scenes"] for r in runs], "methods": {}}
    for r in runs:
        for k, v in r["methods"].items():
            merged["methods"].setdefault(k, []).extend(v["iou"])
    (out / f"eval_{split}.json").write_text(json.dumps(merged) + "\n")
    names = list(merged["methods"])
    for k in names:
        a = np.array(merged["methods"][k])
        print(f"{split}: {k}: {len(a)} scenes, mIoU@1 {a[:, 0].mean():.4f} @3 {a[:, 2].mean():.4f}")
    if len(names) > 1:
        a, b = (np.array(merged["methods"][k]) for k in names[:2])
        for c, lab in ((0, "@1"), (2, "@3")):
            d = b[:, c] - a[:, c]
            print(f"{split}: paired {names[1]} minus {names[0]} {lab}: {d.mean():+.4f} (s.e. {d.std(ddof=1) / np.sqrt(len(d)):.4f}, "
                  f"{len(d)} scenes; better/worse by > 0.05: {(d > 0.05).sum()}/{(d < -0.05).sum()})")
EOF
    ;;
*)
    echo "usage: tools/dsn_gpu.sh train|eval" >&2; exit 2 ;;
esac
