"""Fine-tuning: the training loop and its config, the loss, what is tuned (tuning.py) and the training data."""
