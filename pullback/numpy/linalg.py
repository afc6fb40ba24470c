"""pullback.numpy.linalg: differentiable `numpy.linalg` functions."""
__all__ = []
