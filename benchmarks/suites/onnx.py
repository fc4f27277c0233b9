"""Suite `onnx`: the image encoder in ONNX Runtime against torch, on this CPU. One model, exported
once per attention query-chunk budget (AttentionConfig.chunk_mb, baked into the graph: 256 is
basam's default, a large value means one chunk per attention call); torch and each ONNX Runtime
session run in alternation after an untimed warm-up.
Full: vit_b (random weights) at 1024 px, budgets 256 and 100000 MB. Quick: `tiny` at 256 px, budget 256.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

import _common as C
from benchmarks.record import Result, ratio_cell


def run(result: Result, quick: bool) -> None:
    import onnxruntime as ort

    import basam
    from basam.formats.onnx import export_onnx

    name, size, budgets, rounds = ("tiny", 256, [256.0], 2) if quick else ("vit_b", 1024, [256.0, 100000.0], 3)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = basam.load_model(name, attn="sam").eval()
    image = torch.randn(1, 3, size, size)
    candidates, export_s = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            model.set_attention(basam.AttentionConfig.from_dict({**model.attn_cfg.to_dict(), "chunk_mb": budget}))
            start = time.perf_counter()
            paths = export_onnx(model, Path(tmp) / f"chunk{budget:g}", (size, size))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(paths["encoder"]), options, providers=["CPUExecutionProvider"])
            export_s[budget] = time.perf_counter() - start
            candidates[f"onnxruntime chunk_mb={budget:g}"] = lambda s=session: torch.from_numpy(
                s.run(None, {"image": image.numpy()})[0]
            )
        model.set_attention(basam.AttentionConfig.from_dict({**model.attn_cfg.to_dict(), "chunk_mb": 256.0}))
        model.eval()  # export_onnx leaves the model in training mode, where torch takes its slower paths
        with torch.no_grad():
            candidates = {"torch": lambda: model.image_encoder(image), **candidates}
            for fn in candidates.values():  # warm-up
                fn()
            outs = {}
            times = C.alternate(candidates, rounds, outputs=outs)
    s = result.section(
        "onnx",
        f"The {name} encoder at {size} px: ONNX Runtime {ort.__version__} against torch",
        ["runtime", "median s", "speed-up vs torch (min–max)", "max abs diff vs torch"],
    )
    for cand in candidates:
        r = C.ratio(times, "torch", cand)
        diff = (outs[cand] - outs["torch"]).abs().max().item()
        s.row(cand, f"{C.med(times[cand]):.3f}", ratio_cell(r), f"{diff:.1e}")
        if cand != "torch":
            result.figure(s, f"{cand.split()[-1].replace('=', '_')}_vs_torch", r[0])
    result.note(
        s,
        f"{rounds} alternating rounds after a warm-up, {threads} thread(s) in both runtimes; export and "
        "session creation took " + ", ".join(f"{v:.0f} s (chunk_mb={k:g})" for k, v in export_s.items()) + ".",
    )
