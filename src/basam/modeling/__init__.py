"""Every part of the models, with the parameter names of the released checkpoints. attention.py holds
BA-SAM itself: the scaling factor λ(N), the distance bias and the one attention function."""
