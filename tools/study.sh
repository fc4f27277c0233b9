#!/usr/bin/env bash
# The miniature BA-SAM study (docs/study.md), on the embedded default model.
#
#   tools/study.sh ablation|zeroshot|zeroshot2048|fixedgt|finetune|finetune1024|finetune-camo|generalized|attention|windows|finetune-windows
#                  [OUT] [RUNS]
#   (OUT defaults to results/study, RUNS to runs/study)
#
# Sections are independent (each a few to ~30 CPU-minutes on one core; finetune1024 ~80 minutes on
# two, which it runs side by side itself); run two at once on two
# cores with OMP_NUM_THREADS=1. Tables land in OUT (sweep.md / *.md), training runs in RUNS.
set -euo pipefail
section=${1:?ablation|zeroshot|zeroshot2048|fixedgt|finetune|finetune1024|finetune-camo|generalized|attention|windows|finetune-windows}
out=${2:-results/study}
runs=${3:-runs/study}
sweep() { basam sweep --data synth:all --model default --group-by-prefix "$@"; }
# finetune_run RESOLUTION STEPS BATCH VAL_EVERY VAL_SIZE OUT --tune M --lr LR --attn A [...]: one run,
# validated on scenes without a prompt
finetune_run() {
  local res=$1 steps=$2 batch=$3 every=$4 val_size=$5 run_out=$6
  shift 6
  basam train --model default --data synth:all "$@" --resolution "$res" --prompt box,none --steps "$steps" \
    --batch-size "$batch" --warmup 10 --seed 3 --val-every "$every" --val-size "$val_size" --val-prompt none \
    --checkpoint-every 0 --no-progress --out "$run_out"
}
# finetune_grid ATTN RESOLUTION STEPS BATCH VAL_EVERY VAL_SIZE NAME: one run per --tune mode
finetune_grid() {
  local attn=$1 name=$7 extra=()
  [[ $attn == basam ]] && extra=(--learnable-slopes)
  for mode_lr in full:1e-4 decoder:3e-4 adapter:1e-3 lora:1e-3; do
    local mode=${mode_lr%%:*} lr=${mode_lr#*:}
    finetune_run "$2" "$3" "$4" "$5" "$6" "$runs/$name-$mode-$attn" --tune "$mode" --lr "$lr" --attn "$attn" "${extra[@]}"
  done
}
# finetune_curves RESOLUTION VAL_SIZE NAME: the validation curves of finetune_grid's eight runs
finetune_curves() {
  local res=$1 val_size=$2 name=$3 args=()
  for mode in full decoder adapter lora; do
    args+=("$mode, sam=$runs/$name-$mode-sam" "$mode, basam+slopes=$runs/$name-$mode-basam")
  done
  mkdir -p "$out/$name"
  python tools/val_curves.py "$out/$name/curves.png" "${args[@]}" \
    --title "fine-tuning at $res px: validation ($val_size scenes, no prompt)" | tee "$out/$name/curves.md"
}

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
  for attn in sam basam; do finetune_grid "$attn" 512 120 4 30 32 finetune; done
  finetune_curves 512 32 finetune
  ;;
finetune1024)  # the same at 1024 px (16× the tokens); ~10 s per step of 2 images on one core (docs/study.md), so
  # fewer, smaller steps and validation scenes; sam and basam run side by side, one core each
  OMP_NUM_THREADS=1 finetune_grid sam 1024 80 2 20 24 finetune1024 & plain=$!
  OMP_NUM_THREADS=1 finetune_grid basam 1024 80 2 20 24 finetune1024 & slopes=$!
  wait $plain && wait $slopes
  finetune_curves 1024 24 finetune1024
  # adapter with BA-SAM dips: is it the learnable slopes? the same run with the slopes fixed
  finetune_run 1024 80 2 20 24 "$runs/finetune1024-adapter-basam-fixed" --tune adapter --lr 1e-3 --attn basam
  python tools/val_curves.py "$out/finetune1024/adapter.png" "adapter, sam=$runs/finetune1024-adapter-sam" \
    "adapter, basam+slopes=$runs/finetune1024-adapter-basam" "adapter, basam fixed=$runs/finetune1024-adapter-basam-fixed" \
    --title "fine-tuning at 1024 px, adapter: validation (24 scenes, no prompt)" | tee "$out/finetune1024/adapter.md"
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
windows)  # plain attention with the windows kept at 8 tokens, or grown with the image (the "Why" test),
  # on the shipped weights
  sweep --n 8 --attn sam --windows fixed,scaled --resolution 96,128,256,512,1024 --prompt box,center,none \
    --out "$out/window-scale-shipped"
  # 2048 px: ~25 s per image and row on one core here, so 3 scenes per family (the 12 scenes of zeroshot2048)
  sweep --n 3 --attn sam --windows fixed,scaled --resolution 2048 --prompt box,center,none \
    --out "$out/window-scale-shipped-2048"
  # and BA-SAM on top of scaled windows
  sweep --n 8 --attn sam,nsf,basam --windows fixed,scaled --resolution 512,1024 --prompt box,center,none \
    --out "$out/window-scale-shipped-presets"
  ;;
finetune-windows)  # does a short fine-tune at 1024 px add to scaled windows? full mode, plain and BA-SAM with
  # learnable slopes, fixed and scaled windows, the same seed, data and steps; no validation during the runs.
  # The untuned rows come from the windows section's presets sweep: run that first.
  steps=30 batch=2  # ~45 CPU-minutes for the four runs on one loaded core (docs/study.md)
  for attn in sam basam; do
    extra=(); [[ $attn == basam ]] && extra=(--learnable-slopes)
    for windows in fixed scaled; do
      finetune_run 1024 "$steps" "$batch" 0 0 "$runs/ftw-$attn-$windows" --tune full --lr 1e-4 --attn "$attn" \
        --windows "$windows" "${extra[@]}"
      # the same 32 test scenes as the untuned rows (window-scale-shipped-presets), with the run's own slopes
      sweep --n 8 --attn checkpoint --checkpoint "$runs/ftw-$attn-$windows/model.safetensors" --windows "$windows" \
        --resolution 1024 --prompt box,none --out "$out/finetune-windows/$attn-$windows"
    done
  done
  python tools/finetune_windows_table.py "$out/window-scale-shipped-presets" "$out/finetune-windows" \
    | tee "$out/finetune-windows/table.md"
  ;;
*) echo "unknown section $section" >&2; exit 2 ;;
esac
