#!/usr/bin/env bash
# The miniature BA-SAM study of the README ("Results (miniature)"), on the embedded default model.
#
#   tools/study.sh ablation|zeroshot|zeroshot2048|fixedgt|finetune|finetune-camo|generalized|attention
#                  [OUT] [RUNS]
#   (OUT defaults to docs/study, RUNS to runs/study)
#
# Sections are independent (each a few to ~30 CPU-minutes on one core); run two at once on two
# cores with OMP_NUM_THREADS=1. Tables land in OUT (sweep.md / *.md), training runs in RUNS.
set -euo pipefail
section=${1:?ablation|zeroshot|zeroshot2048|fixedgt|finetune|finetune-camo|generalized|attention}
out=${2:-docs/study}
runs=${3:-runs/study}
sweep() { basam sweep --data synth:all --model default --group-by-prefix "$@"; }

case $section in
ablation)  # BA-SAM's options, zero-shot, on the VALIDATION split only: one option at a time away
  # from the paper's settings (ALiBi slopes, offset 0, λ in global blocks), then the chosen ones
  common=(--split val --n 6 --resolution 128,1024 --prompt box,none)
  paper=(--nsf-blocks global --bm-distance euclidean --bm-slope-scale 1 --bm-offset 0 --bm-blocks global)
  sweep "${common[@]}" "${paper[@]}" --attn sam,nsf,bm,basam --out "$out/ablation/paper"
  sweep "${common[@]}" "${paper[@]}" --attn nsf --nsf-blocks all --out "$out/ablation/nsf-all"
  sweep "${common[@]}" "${paper[@]}" --attn bm --bm-offset train --out "$out/ablation/bm-offset-train"
  sweep "${common[@]}" "${paper[@]}" --attn bm --bm-distance manhattan --out "$out/ablation/bm-manhattan"
  sweep "${common[@]}" "${paper[@]}" --attn bm --bm-distance raster --out "$out/ablation/bm-raster"
  sweep "${common[@]}" "${paper[@]}" --attn bm --bm-slope-scale 0.25 --out "$out/ablation/bm-slope-0.25"
  sweep "${common[@]}" "${paper[@]}" --attn bm --bm-slope-scale 4 --out "$out/ablation/bm-slope-4"
  sweep "${common[@]}" "${paper[@]}" --attn bm --bm-blocks all --out "$out/ablation/bm-blocks-all"
  sweep "${common[@]}" --attn basam --out "$out/ablation/chosen"  # the presets since: all, 0.25, train
  python tools/ablation_table.py "$out/ablation" | tee "$out/ablation/table.md"
  ;;
zeroshot)  # test split, 96 px (0.375×) to 1024 px (4×), every preset, three prompt kinds
  sweep --n 8 --attn sam,nsf,bm,basam,official --resolution 96,128,256,512,1024 --prompt box,center,none \
    --out "$out/zeroshot"
  ;;
zeroshot2048)  # 2048 px (8×, 64× the tokens) costs ~20 s per image and preset here: fewer scenes
  sweep --n 3 --attn sam,nsf,bm,basam --resolution 256,1024,2048 --prompt box,center,none \
    --out "$out/zeroshot-2048"
  sweep --n 3 --attn official --resolution 256,1024,2048 --prompt box,center,none \
    --out "$out/zeroshot-2048-official"  # the same 12 scenes
  ;;
fixedgt)  # the same scenes and ground truth for every input size: only the model's input changes
  sweep --n 8 --attn sam,nsf,bm,basam --render-size 1024 --resolution 128,256,512,1024 --prompt box,center,none \
    --out "$out/fixedgt-1024"
  # a small image: run it at its own size, or upsampled to the training size (SAM's usual resize)
  sweep --n 8 --attn sam,nsf,bm,basam --render-size 96 --resolution 96,128,256 --prompt box,center,none \
    --out "$out/fixedgt-96"
  ;;
finetune)  # fine-tuning at 512 px (unseen: 4× the training tokens), plain vs BA-SAM with learnable slopes
  for mode_lr in full:1e-4 decoder:3e-4 adapter:1e-3 lora:1e-3; do
    mode=${mode_lr%%:*} lr=${mode_lr#*:}
    for attn in sam basam; do
      extra=(); [[ $attn == basam ]] && extra=(--learnable-slopes)
      basam train --model default --data synth:all --tune "$mode" --attn "$attn" "${extra[@]}" \
        --resolution 512 --prompt box,none --steps 120 --batch-size 4 --lr "$lr" --warmup 10 --seed 3 \
        --val-every 30 --val-size 32 --val-prompt none --checkpoint-every 0 --no-progress \
        --out "$runs/finetune-$mode-$attn"
    done
  done
  args=()
  for mode in full decoder adapter lora; do
    args+=("$mode, sam=$runs/finetune-$mode-sam" "$mode, basam+slopes=$runs/finetune-$mode-basam")
  done
  mkdir -p "$out/finetune"
  python tools/val_curves.py "$out/finetune/curves.png" "${args[@]}" \
    --title "fine-tuning at 512 px: validation (32 scenes, no prompt)" | tee "$out/finetune/curves.md"
  ;;
finetune-camo)  # where zero-shot degrades most (camouflaged, box): fine-tuning at 512 px, 120 and 360 steps
  mkdir -p "$out/finetune"
  for run in 120:30 360:60; do  # steps:val-every
    steps=${run%%:*} every=${run#*:}
    name=camo; [[ $steps == 360 ]] && name=camo360
    for attn in sam basam; do
      extra=(); [[ $attn == basam ]] && extra=(--learnable-slopes)
      basam train --model default --data synth:camouflaged --tune full --attn "$attn" "${extra[@]}" \
        --resolution 512 --prompt box,center,none --steps "$steps" --batch-size 4 --lr 1e-4 --warmup 10 \
        --seed 3 --val-every "$every" --val-size 32 --val-prompt box --checkpoint-every 0 --no-progress \
        --out "$runs/$name-full-$attn"
    done
    python tools/val_curves.py "$out/finetune/camouflaged-$steps.png" "full, sam=$runs/$name-full-sam" \
      "full, basam+slopes=$runs/$name-full-basam" \
      --title "fine-tuning on camouflaged at 512 px, $steps steps: validation (32 scenes, box)" \
      | tee "$out/finetune/camouflaged-$steps.md"
  done
  ;;
generalized)  # one model per family vs the joint model (finetune-full-basam), same steps and settings
  for family in salient camouflaged thin lesion; do
    basam train --model default --data "synth:$family" --tune full --attn basam --learnable-slopes \
      --resolution 512 --prompt box,none --steps 120 --batch-size 4 --lr 1e-4 --warmup 10 --seed 3 \
      --checkpoint-every 0 --no-progress --out "$runs/family-$family"
    basam eval --data "synth:$family" --n 8 --resolution 512 --prompt none --model default \
      --checkpoint "$runs/family-$family/model.safetensors" --out "$out/generalized/family-$family"
  done
  basam eval --data synth:all --n 8 --resolution 512 --prompt none --model default --group-by-prefix \
    --checkpoint "$runs/finetune-full-basam/model.safetensors" --out "$out/generalized/joint"
  basam eval --data synth:all --n 8 --resolution 512 --prompt none --model default --group-by-prefix \
    --attn basam --out "$out/generalized/zero-shot"
  ;;
attention)  # entropy and reach of the global blocks' attention, per resolution and preset
  mkdir -p "$out/attention"
  python tools/attention_stats.py --n 1 --resolution 128,256,512,1024,2048 --attn sam,nsf,bm,basam \
    | tee "$out/attention/stats.md"
  ;;
*) echo "unknown section $section" >&2; exit 2 ;;
esac
