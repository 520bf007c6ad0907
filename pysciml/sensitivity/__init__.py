"""Gradients of solves: discrete (backprop through steps) and continuous adjoints."""
