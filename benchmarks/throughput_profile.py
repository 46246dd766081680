"""Where the time of benchmarks/throughput.py's arms went, one line per source: the isolated
stage costs of the compute bound, the CPU accounting of each Ray run's timed window per
process role (driver, raylet, GCS, workers), its t_* columns and ``ds.stats()``, and the naive
loop's wall time per stage.

The CPU accounting splits ray/bound into two factors: *CPU efficiency* (the stages' isolated
CPU cost per image / the CPU the Ray process tree spent per image: serialisation, scheduling
and contention overhead) times *occupancy* (cores the Ray tree kept busy / cores: idle cores
in fill and drain, and cores taken by other processes; Ray runs its workers at nice 15, so on
a shared machine other processes take precedence)."""

from __future__ import annotations

from benchmarks.graph_stages import NAMES


def ray_profile_lines(ray_: dict, bound: dict | None, cores: int) -> list[str]:
    """Where one Ray run's time went: CPU accounting, t_* columns, ds.stats(), start-up."""
    lines: list[str] = []
    cpu, rows = ray_["cpu_timed"], ray_["images"]
    window = f"{ray_['layout']} layout, timed window (from {ray_['timed_from']})"
    if cpu["wall_s"] > 0 and rows and cpu["tree_cpu_s"] > 0:
        per_image = cpu["tree_cpu_s"] / rows
        capacity = cores * cpu["wall_s"]
        line = (f"{window}: the Ray process tree (driver, raylet, GCS, workers) spent "
                f"{1e3 * per_image:.1f} CPU ms per image and kept "
                f"{cpu['tree_cpu_s'] / cpu['wall_s']:.2f} of {cores} cores busy; other "
                f"processes took {cpu['others_cpu_s'] / cpu['wall_s']:.2f} cores, "
                f"{max(0.0, capacity - cpu['machine_busy_cpu_s']) / cpu['wall_s']:.2f} "
                f"idle, steal {cpu['steal_cpu_s'] / cpu['wall_s']:.2f}")
        if bound:
            efficiency = bound["sum_cpu_s_per_image"] / per_image
            occupancy = cpu["tree_cpu_s"] / capacity
            line += (f" => ray/bound {efficiency * occupancy:.2f} = CPU efficiency "
                     f"{efficiency:.2f} (isolated {1e3 * bound['sum_cpu_s_per_image']:.1f}"
                     f" / {1e3 * per_image:.1f} CPU ms) x occupancy {occupancy:.2f}")
        lines.append(line)
        roles = ray_.get("cpu_by_process_timed", {})
        lines.append("CPU ms per image by process in that window: " + ", ".join(
            f"{role} {1e3 * cpu_s / rows:.1f}" for role, cpu_s in roles.items()
            if cpu_s / rows >= 5e-4))
    name = f"{ray_['layout']} layout"
    lines.append(f"{name}, t_* columns of the Ray output (wall ms per row inside the stage): "
                 + ", ".join(f"{k[2:]} {1e3 * v:.1f}"
                             for k, v in ray_["t_columns_s_per_row"].items()))
    lines.append(f"{name}, ds.stats() per operator (tasks; remote CPU s / wall s): " + "; ".join(
        f"{op['operator']} ({op['tasks']}; {op.get('cpu_s', 0):.2f} / "
        f"{op.get('wall_s', 0):.2f})" for op in ray_["stats"]))
    lines.append(f"{name}, not timed: Ray start-up {ray_['ray_start_s']:.1f} s, warm-up scan "
                 f"{ray_['warmup_scan_s']:.1f} s, starting {ray_['actors']} actors and "
                 f"loading their weights {ray_['actor_startup_s']:.1f} s; timed: first "
                 f"output batch after {ray_['first_batch_s']:.1f} s, "
                 f"{ray_['output_batches']} output batches in {ray_['timed_s']:.1f} s")
    return lines


def profile_lines(result: dict) -> list[str]:
    """Where the time goes, one line per source (plain text, also used as Markdown bullets)."""
    cores = result["machine"]["logical_cores"]
    bound, ray_ = result.get("bound"), result.get("ray")
    lines = []
    if bound:
        total = bound["sum_cpu_s_per_image"]
        lines.append("isolated stage cost (CPU ms/image, 1 thread, best batch): " + ", ".join(
            f"{name} {1e3 * bound['cpu_s_per_image'][name][bound['best_batch'][name]]:.1f}"
            for name in NAMES) + f"; sum {1e3 * total:.1f}")
    for run in [ray_, *result.get("ray_other", [])] if ray_ else []:
        lines += ray_profile_lines(run, bound, cores)
    naive = result.get("naive")
    if naive:
        lines.append(f"naive loop ({naive['torch_threads']} torch threads), ms/image: "
                     + ", ".join(f"{k} {naive['ms_per_image'][k]:.1f}" for k in NAMES))
    return lines
