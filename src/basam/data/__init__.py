"""Datasets: readers for the standard layouts, prompt sampling, the synthetic benchmark."""
