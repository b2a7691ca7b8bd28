"""Inference: load a run, predict probabilities, write and check submissions."""
