"""segment_anything.utils' module paths under basam: transforms (ResizeLongestSide), amg (the
automatic mask generation helpers) and onnx (SamOnnxModel)."""
