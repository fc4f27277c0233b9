"""Checkpoint files in and out: official SAM / MobileSAM .pth, safetensors, basam exports, Hugging Face
folders (hf.py) and ONNX graphs (onnx.py)."""
