"""The bus library every process uses, and the broker process (``python -m bus``)."""
