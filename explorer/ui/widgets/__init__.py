"""Shared Qt widgets: error banner, checkpoint bar, task bar, VTK view."""

from .banner import ErrorBanner
from .checkpoint_bar import CheckpointBar
from .task_bar import TaskBar

__all__ = ["ErrorBanner", "CheckpointBar", "TaskBar"]
