"""OpenVINO backend."""

from toolkit.backends.openvino.runner import *  # noqa: F401,F403
from toolkit.backends.openvino.runner import _save_atomic, read_ir_meta  # noqa: F401
