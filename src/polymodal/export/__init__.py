"""Model transforms for deployment: export (ONNX, TorchScript), int8 quantization and pruning.

    graph.py        the model as one graph over named tensors (Batch keys + presence masks)
    onnx_graph.py   tracing to ONNX / TorchScript bytes; ONNX Runtime sessions
    quantize.py     ONNX Runtime int8 quantization (dynamic, or static with calibration rows)
    export.py       ``polymodal export``: an export directory, checked for parity with the eager model
    prune.py        ``polymodal prune``: magnitude pruning + optional fine-tune

They take a fitted pipeline and give back files or a smaller model; the HTTP server (:mod:`polymodal.serving`) uses
them and they never import it. Importing this package imports neither onnx nor onnxruntime.
"""
