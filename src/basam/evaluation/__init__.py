"""Scoring a model on a dataset: the evaluation loop, the sweep over settings, the metrics and the reports."""
