"""TensorRT backend."""

from toolkit.backends.tensorrt.check import *  # noqa: F401,F403
from toolkit.backends.tensorrt.runner import *  # noqa: F401,F403
