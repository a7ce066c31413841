"""Policies trained with this project and shipped with it (each: policy.onnx + policy.json)."""
