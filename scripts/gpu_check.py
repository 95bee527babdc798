"""The checks of `make gpu-check` that read results (scripts/gpu_check.sh runs the commands).

python scripts/gpu_check.py SUBCOMMAND ...; each prints one line of detail and exits 0 when
its check holds, 1 when it does not:
  env OUT [DEVICE]         the environment with DEVICE (cuda) started -> OUT/environment.json
  same A B                 two run roots computed the same weights and metrics (bit for bit)
  search ROOT TICKET       the search's ticket is valid and names one environment
  costs DIR                the cost sessions in DIR (a costs/ folder) were timed on the GPU
  recompiles LOG           how many times torch.compile compiled (TORCH_LOGS=recompiles)
  bench REPORT             every ratio of a benchmarks report.json met its target
  step OUT NAME RC MS      append a step's outcome to OUT/steps.jsonl
  report OUT               OUT/steps.jsonl -> OUT/report.json and OUT/report.md
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def env(out: str, device: str = "cuda") -> bool:
    from bench.engine.device import select_device
    from bench.util.environment import environment

    select_device(device)
    e = environment()
    Path(out, "environment.json").write_text(json.dumps(e, indent=2) + "\n")
    print(f"{e['device_model']}, torch {e['torch']}, CUDA {e['cuda']}, cuDNN {e['cudnn']}, "
          f"TF32 matmul {e['tf32_matmul']} cudnn {e['tf32_cudnn']}")  # fmt: skip
    return e["device"] == device.split(":")[0]


def _weights(path: Path) -> dict[str, Any]:
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    return obj.get("model") or obj["state_dict"]


def _metrics(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [{k: v for k, v in r.items() if k != "time_s"} for r in lines]


def same(a: str, b: str) -> bool:
    import torch

    ra, rb = Path(a), Path(b)
    files = sorted(p.relative_to(ra) for p in ra.glob("train_*/latest.pt"))
    if not files or files != sorted(p.relative_to(rb) for p in rb.glob("train_*/latest.pt")):
        print(f"different runs: {files} vs {sorted(rb.glob('train_*/latest.pt'))}")
        return False
    worst = 0.0
    for rel in files:
        wa, wb = _weights(ra / rel), _weights(rb / rel)
        for k in wa:
            if wa[k].is_floating_point():
                worst = max(worst, (wa[k].double() - wb[k].double()).abs().max().item())
            elif not torch.equal(wa[k], wb[k]):
                worst = float("inf")
    metrics = all(
        _metrics(p) == _metrics(rb / p.relative_to(ra)) for p in ra.glob("train_*/metrics.jsonl")
    )
    print(f"weights {'bit-equal' if worst == 0 else f'differ by up to {worst:.3g}'}; "
          f"metrics {'equal' if metrics else 'differ'}")  # fmt: skip
    return worst == 0 and metrics


def search(root: str, ticket: str) -> bool:
    from bench.ticket.schema import load_ticket

    t = load_ticket(ticket)  # validates: a bad ticket raises
    prov = t.provenance
    mixed = prov.get("environment_mixed")
    device = (prov.get("environment") or {}).get("device")
    print(f"ticket {t.stages} ({t.kept}/{t.total}), device {device}, "
          f"environment_mixed {mixed or 'absent'}")  # fmt: skip
    return not mixed and device == os.environ.get("GPU_CHECK_DEVICE", "cuda")


def costs(folder: str) -> bool:
    sessions = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    rows = []
    for s in sessions:
        ms = {k: a.get("latency_ms") for k, a in (s.get("archs") or {}).items()}
        rows.append(f"{s['kind']} {s['input_shape']} on {s['machine']['device']}: {ms} ms")
    print(f"{len(sessions)} cost session(s): " + ("; ".join(rows) or "none"))
    want = os.environ.get("GPU_CHECK_DEVICE", "cuda")
    return bool(sessions) and all(s["device"].startswith(want) for s in sessions)


def recompiles(log: str) -> bool:
    text = Path(log).read_text(errors="replace")
    n = text.count("Recompiling function")
    print(f"torch.compile recompiled {n} time(s) after the first compile")
    return True


def bench(report: str) -> bool:
    data = json.loads(Path(report).read_text())
    lines, ok = [], True
    for name, b in data.get("benchmarks", {}).items():
        if b.get("status") != "ok":
            lines.append(f"{name}: {b.get('status')} ({b.get('error')})")
            ok = False
            continue
        for comp in b.get("comparisons", []):
            for fig, stat in comp.get("figures", {}).items():
                met = stat.get("met")
                lines.append(
                    f"{comp['case']}: {fig} {stat.get('median'):.3f} "
                    f"(target {stat.get('target')}) {'ok' if met else 'MISSED'}"
                )
                ok = ok and met is not False
    print("; ".join(lines) or "no comparisons")
    return ok and bool(lines)


def step(out: str, name: str, rc: str, ms: str) -> bool:
    """Append step `name`'s outcome to OUT/steps.jsonl (its log's last line: the detail)."""
    log = Path(out, "logs", f"{name}.log")
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    detail = lines[-1][:400] if lines else ""
    if rc in ("124", "137") and "killed at" not in detail:
        detail = f"timed out (exit {rc}); {detail}"
    elif rc != "0" and not detail:
        detail = f"exit {rc}"
    row = {"step": name, "status": "ok" if rc == "0" else "failed", "rc": int(rc),
           "seconds": int(ms) / 1000, "detail": detail}  # fmt: skip
    with Path(out, "steps.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    return True


def report(out: str) -> bool:
    root = Path(out)
    steps = [json.loads(x) for x in (root / "steps.jsonl").read_text().splitlines() if x]
    env_path = root / "environment.json"
    environment = json.loads(env_path.read_text()) if env_path.is_file() else None
    failed = [s["step"] for s in steps if s["status"] == "failed"]
    data = {"ok": not failed, "failed": failed, "environment": environment, "steps": steps}
    (root / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    verdict = "all passed" if not failed else "FAILED: " + ", ".join(failed)
    md = [f"# gpu-check {root.name}: {verdict}", ""]
    if environment:
        md += [f"{environment['device_model']}; torch {environment['torch']}, CUDA "
               f"{environment['cuda']}, cuDNN {environment['cudnn']}", ""]  # fmt: skip
    md += ["| step | status | seconds | detail |", "|---|---|---|---|"]
    for s in steps:
        detail = s["detail"].replace("|", "/").replace("\n", " ")
        md.append(f"| {s['step']} | {s['status']} | {s['seconds']:.1f} | {detail} |")
    (root / "report.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return not failed


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    sys.exit(0 if globals()[command](*args) else 1)
