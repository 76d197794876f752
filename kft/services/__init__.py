"""The only holders of process state, shared by every browser tab and API caller. ``Workspace`` composes them:
``ModelSlot`` (model, adapters, GPU), ``TrainingService``, ``ComparisonService``, ``Limits`` and the ``UploadStore``.
Nothing here imports gradio.

May import: kft.system, kft.config, kft.data, kft.runs, kft.models, kft.inference, kft.training.
"""

from .limits import Limits
from .model_slot import BusyError, ModelSlot
from .workspace import Workspace

__all__ = ["BusyError", "Limits", "ModelSlot", "Workspace"]
