"""The official segment-anything modeling code, imported without its package __init__
(which pulls in torchvision through the predictor)."""

import importlib.util
import pathlib
import sys
import types


def official_modeling():
    if "segment_anything.modeling" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None or spec.origin is None:
            raise ImportError("segment-anything is not installed (pip install segment-anything)")
        pkg = types.ModuleType("segment_anything")
        pkg.__path__ = [str(pathlib.Path(spec.origin).parent)]
        sys.modules["segment_anything"] = pkg
    import segment_anything.modeling as modeling

    return modeling
