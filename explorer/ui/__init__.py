"""Qt code: the main window, workers and shared widgets. The only package (with papers/*/panel.py) importing Qt."""
