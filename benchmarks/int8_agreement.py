"""int8 agreement on held-out rows: a run exported with `polymodal export --quantize int8 --calibration TRAIN`
(the gated path: boundary layers float32, culprits kept float32, refused below 99% on the calibration rows), then
the int8 graph's predictions compared with the eager model's on TEST rows it was not calibrated on.

    .venv/bin/python benchmarks/int8_agreement.py RUN TRAIN TEST [--name demo]

For the demo model: `polymodal demo --out /tmp/demo` first, then RUN=/tmp/demo/run, TRAIN/TEST=/tmp/demo/data/*.csv.
Appends to benchmarks/results/int8_agreement.json (with the load average and date).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--name", default="model")
    ap.add_argument("--quantize-mode", default="static", choices=["static", "dynamic"])
    args = ap.parse_args()

    from polymodal import Predictor
    from polymodal.export.export import ExportConfig, export_run

    with tempfile.TemporaryDirectory(prefix="polymodal-int8-") as tmp:
        out = Path(tmp) / "export"
        start = time.perf_counter()
        result = export_run(args.run, out, ExportConfig(quantize="int8", quantize_mode=args.quantize_mode), args.train)
        export_s = time.perf_counter() - start
        eager = Predictor.load(args.run, verbose=False).predict(args.test)
        int8 = Predictor.load(out, verbose=False, backend="onnx-int8").predict(args.test)
        fp32 = Predictor.load(out, verbose=False, backend="onnx").predict(args.test)
    gate = result.int8_gate
    assert gate is not None
    record = {
        "name": args.name,
        "quantization": result.quantization,
        "test_rows": len(eager),
        "int8_agreement_test": round(float((eager.to_numpy() == int8.to_numpy()).mean()), 4),
        "onnx_fp32_agreement_test": round(float((eager.to_numpy() == fp32.to_numpy()).mean()), 4),
        "gate_agreement_calibration": round(gate.agreement, 4),
        "gate_rows": gate.rows,
        "gate_rounds": gate.rounds,
        "kept_float32": gate.kept_float,
        "export_seconds": round(export_s, 1),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
    }
    path = ROOT / "results" / "int8_agreement.json"
    records = json.loads(path.read_text()) if path.exists() else []
    records = [r for r in records if r["name"] != args.name] + [record]
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
