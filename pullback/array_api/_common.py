"""What the Array API namespace's modules share: devices and dtypes of arrays or dtypes."""
import numpy as np

from ..errors import unsupported


def check_device(device):
    """Refuse any device but the CPU (the only one pullback's arrays live on)."""
    if device not in (None, "cpu"):
        raise unsupported("the Array API namespace", f"device={device!r}: pullback's arrays "
                          "live on the CPU (device='cpu')")


def dtype_of(x):
    """The dtype of an array, tracer or Python scalar, or `x` itself as a dtype."""
    if hasattr(x, "dtype"):
        return np.dtype(x.dtype)
    if isinstance(x, (bool, int, float, complex)):
        return np.result_type(x)
    return np.dtype(x)
