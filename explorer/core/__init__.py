"""Shared headless machinery: devices, checkpoints, tasks, settings, registry. Never imports Qt."""
