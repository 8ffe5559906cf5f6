"""Experiments of the paper: CSC, sanity checks, random logit, class sensitivity,
and the results store they share."""
