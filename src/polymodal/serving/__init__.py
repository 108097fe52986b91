"""Serving: where the model runs (backends) and the FastAPI server.

    backends.py     where the model runs: torch, onnx, onnx-int8 (a registry; the ONNX ones use polymodal.export)
    schemas.py      server settings and request/response models built from the model's schema
    payload.py      request bodies → decoded rows (from memory, under the loaders' limits)
    pool.py         the bounded worker pool decoding /predict/stream and /generate files (503 when its queue is full)
    batcher.py      micro-batching: /predict requests decoded as a group, then merged into one model call
    app.py          the FastAPI app and ``polymodal serve``
    net.py          the listening socket (bound first: a busy port is a clear error)

Export, quantization and pruning live in :mod:`polymodal.export`. Importing this package imports neither
onnxruntime nor FastAPI; each module imports what it needs.
"""
