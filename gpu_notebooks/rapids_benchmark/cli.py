"""The benchmark app's headless flags, from the shared reader's options: sizes, ops, repeats, what to run."""

from __future__ import annotations

from gpu_notebooks.rapids_benchmark.ops import ALL_OPS


def parse_cli_args(args: dict) -> dict:
    """Headless flags: `-- --smoke` (tiny, all ops, sweep) or `-- --run --rows N --repeats R --ops a,b --sweep --cpu --probe --data PATH`."""

    def _int(name):
        raw = args.get(name)
        return int(float(raw)) if raw not in (None, "") else None

    ops = [o.strip() for o in str(args.get("ops") or "").split(",") if o.strip() in ALL_OPS]
    return {
        "smoke": "smoke" in args,
        "autorun": "smoke" in args or "run" in args,
        "rows": _int("rows"),
        "repeats": _int("repeats"),
        "ops": ops or None,
        "sweep": "sweep" in args,
        "cpu": "cpu" in args,
        "dask": "dask" in args,
        "allow_user_code": "allow-user-code" in args,
        "probe": "probe" in args,  # run the "what utilization hides" probe headless too
        "data": args.get("data") or None,  # your own table, chosen by whoever starts the server
    }
