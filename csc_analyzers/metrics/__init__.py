"""Metrics of the study: pure functions on saliency maps and result values."""
