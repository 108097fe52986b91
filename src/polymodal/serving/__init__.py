"""Deployment: export (ONNX, TorchScript), int8 quantization, pruning, backends, and the FastAPI server.

    graph.py        the model as one graph over named tensors (Batch keys + presence masks)
    onnx_graph.py   tracing to ONNX / TorchScript bytes; ONNX Runtime sessions
    quantize.py     ONNX Runtime int8 quantization (dynamic, or static with calibration rows)
    export.py       ``polymodal export``: an export directory, checked for parity with the eager model
    prune.py        ``polymodal prune``: magnitude pruning + optional fine-tune
    backends.py     where the model runs: torch, onnx, onnx-int8 (a registry)
    schemas.py      server settings and request/response models built from the model's schema
    payload.py      request bodies → decoded rows (from memory, under the loaders' limits)
    batcher.py      micro-batching of concurrent requests
    app.py          the FastAPI app and ``polymodal serve``

Importing this package imports neither onnxruntime nor FastAPI; each module imports what it needs.
"""
