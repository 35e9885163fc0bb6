"""Chikaku's desktop app: a thin PySide6 layer over the engine."""
