"""Other formats: Hugging Face SamModel checkpoints (hf) and ONNX Runtime graphs (onnx)."""
