"""NIPS Explorer: see and touch six NIPS 2016 research results.

Headless packages (``explorer.core``, ``explorer.papers.<id>`` minus ``panel.py``) never import Qt.
"""

__version__ = "0.3.0"
