"""Experiments of the paper: CSC, sanity checks, random logit, class sensitivity,
the results store they share, and the tasks and executors (serial, process,
Ray) that run their units with each method's graph released when it is done."""
