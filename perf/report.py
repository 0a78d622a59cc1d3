#!/usr/bin/python3
"""The perf suite as one report: build/perf/report.md with PNG plots beside it (issue 15).

Reads the benchmarks' JSON in --dir (as perf/run-all.sh writes them) and writes report.md there:
first the goal table (perf/goals.json judged by perf/goals.py: MET, MISSED or NOT RUN), then one
section per plot. Every figure names its environment (testbed or hardware KVM), the wisp commit,
the guest kernel and the peer's version, from the "meta" each JSON carries (perf/vmrun.py
write_json); a JSON from before meta existed is labelled with what this checkout says now, and
says so. A plot whose data no benchmark produced is listed as NOT RUN, never drawn from
anything else. Plots:

  cdf-<template>.png    latency CDFs: cold start, wisp restore (with and without the working-set
                        prefetch) and QEMU's migration-file restore, to the first result (the
                        templates of snapshot.json, and ml_bench.json's serverless-ML worker)
  boot-cdf.png          cold boot to the guest's init marker, wisp and QEMU microvm
  stages.png            the restore's stages (restore, reconnect, invoke), medians per template
  serve-<handler>.png   p50/p99 latency and throughput against concurrency through `wisp serve`
  pages.png             guest pages touched per restore, and those not prefetched
  density.png           summed PSS against live clones (density.json; no benchmark yet)
  memsize.png           snapshot create and restore time against guest memory (memsize.json)
  net.png               virtio-net: TCP stream both ways and round trips, wisp against QEMU's
                        user-space back-end and vhost-net (net.json)

matplotlib (Debian's python3-matplotlib, scripts/setup.sh) with the Agg backend: no display.
Debian's interpreter (the #! line), which that package is installed for (a pyenv python3 lacks
it).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import goals as goals_mod  # noqa: E402
from vmrun import run_meta  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

STAGES = [("restore_ms", "restore"), ("reconnect_ms", "reconnect"), ("invoke_ms", "invoke")]


def load_json(path):
    import json
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        print(f"report: {path} unreadable ({e}); its plots are NOT RUN", file=sys.stderr)
        return None


def meta_of(report):
    """(meta, taken now?): the JSON's own meta, or this checkout's, marked as such."""
    if report.get("meta"):
        return report["meta"], False
    return run_meta(report), True


def caption(report):
    """The line every figure carries: environment, commit, guest kernel, peer."""
    m, now = meta_of(report)
    env = (m.get("environment") or "unknown environment").split(" (")[0]
    kernel = (m.get("kernel") or "kernel unknown").replace("Linux version ", "Linux ")
    kernel = kernel.split(" (")[0]
    commit = (m.get("commit") or "unknown")[:12] + ("-dirty" if "dirty" in (m.get("commit") or "")
                                                    else "")
    peer = (m.get("qemu") or "QEMU version unknown").replace(" emulator version", "")
    return (f"{env} · wisp {commit} · guest {kernel} · peer {peer}"
            + (" · (meta read at report time)" if now else ""))


def finish(fig, report, path):
    fig.text(0.5, 0.005, caption(report), ha="center", va="bottom", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cdf(ax, values, label):
    vals = sorted(v for v in values if isinstance(v, (int, float)))
    if not vals:
        return False
    ys = [(i + 1) / len(vals) for i in range(len(vals))]
    line, = ax.step(vals, ys, where="post",
                    label=f"{label} (n={len(vals)}, median {median(vals):.0f})")
    ax.plot(vals, ys, ".", color=line.get_color())  # a single run is a dot, not nothing
    return True


def median(vals):
    s = sorted(vals)
    n = len(s)
    return (s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2) if n else None


def with_ml(snap, ml):
    """snapshot.json's templates plus the serverless-ML workload of ml_bench.json (its warm
    restores are wisp's restores), each template remembering the JSON it came from."""
    out = dict(snap or {})
    out["handlers"] = {n: dict(h, _source=snap) for n, h in handlers_of(snap).items()}
    res = (ml or {}).get("result")
    if isinstance(res, dict) and res.get("warm_samples"):
        ra = res.get("ratios") or {}
        out["handlers"]["ml"] = {
            "mode": "worker", "handler": "ML worker (SGDClassifier, issue 15)", "_source": ml,
            "restore": res.get("warm"), "restore_samples": res["warm_samples"],
            "cold_samples": res.get("cold_samples", []),
            "qemu_restore_samples": res.get("qemu_restore_samples", []),
            "ratios": {"cold_over_restore": ra.get("cold_over_warm"),
                       "qemu_over_restore": ra.get("qemu_over_warm")}}
    if not snap and out["handlers"]:
        out.update({k: ml.get(k) for k in ("environment", "meta", "benchmark")})
    return out


def handlers_of(snap):
    return {name: h for name, h in (snap or {}).get("handlers", {}).items()
            if isinstance(h, dict) and not h.get("skipped")}


class Report:
    def __init__(self, d):
        self.dir = d
        self.sections = []  # (title, markdown body)
        self.pngs = []

    def section(self, title, body, png=None):
        if png:
            self.pngs.append(png)
            body = f"![{title}]({png})\n\n{body}"
        self.sections.append((title, body))

    def not_run(self, title, why):
        self.sections.append((title, f"**NOT RUN**: {why}"))

    def path(self, name):
        return os.path.join(self.dir, name)


def plot_cdfs(r, snap):
    hs = handlers_of(snap)
    if not hs:
        r.not_run("Latency CDFs per template", "no snapshot.json with a template's results "
                  "(perf/run-all.sh snapshot)")
        return
    for name, h in hs.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        drawn = [cdf(ax, [s.get("first_result_ms") for s in h.get("cold_samples", [])],
                     "cold start (boot + handler + result)"),
                 cdf(ax, [s.get("total_ms") for s in h.get("restore_samples", [])],
                     "wisp restore" + (" (prefetch)" if h.get("restore_no_prefetch") else "")),
                 cdf(ax, [s.get("total_ms") for s in h.get("restore_no_prefetch_samples", [])],
                     "wisp restore (--no-prefetch)"),
                 cdf(ax, [s.get("first_result_ms") for s in h.get("qemu_restore_samples", [])],
                     "QEMU migration-file restore")]
        if not any(drawn):
            plt.close(fig)
            r.not_run(f"Latency CDFs: {name}", "no samples in snapshot.json")
            continue
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("request → first result, ms (log)")
        ax.set_ylabel("fraction of runs")
        ax.set_title(f"{name} template ({h.get('mode')}): {h.get('handler')}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        png = f"cdf-{name}.png"
        finish(fig, h.get("_source") or snap, r.path(png))
        ra = h.get("ratios") or {}
        fmt = lambda v: "-" if v is None else f"{v:.1f}×"  # noqa: E731
        r.section(f"Latency CDFs: {name}",
                  f"cold / restore {fmt(ra.get('cold_over_restore'))}, QEMU / restore "
                  f"{fmt(ra.get('qemu_over_restore'))} (medians; wisp's own total_ms). "
                  f"Missing curves were not measured in this run.", png)


def plot_boot(r, boot):
    samples = (boot or {}).get("samples") or {}
    if not samples:
        r.not_run("Cold boot CDF", "no boot.json (perf/run-all.sh boot)")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for vmm, label in (("wisp", "wisp"), ("qemu", "QEMU microvm")):
        cdf(ax, [s.get("marker_ms") for s in samples.get(vmm, [])], label)
    ax.set_xlabel("spawn → guest init marker, ms")
    ax.set_ylabel("fraction of runs")
    ax.set_title(f"cold boot, {boot.get('mem_mib')} MiB, {boot.get('vcpus')} vCPU", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    finish(fig, boot, r.path("boot-cdf.png"))
    ratio = (boot.get("ratio_wisp_over_qemu") or {}).get("boot_to_init_marker")
    r.section("Cold boot CDF", f"wisp / QEMU (medians): {ratio:.2f}×" if ratio else "",
              "boot-cdf.png")


def plot_stages(r, snap):
    rows = []
    for name, h in handlers_of(snap).items():
        for key, label in (("restore", ""), ("restore_no_prefetch", " no-prefetch")):
            sec = h.get(key)
            if sec:
                meds = [(sec.get(k) or {}).get("median") or 0 for k, _ in STAGES]
                rows.append((name + label, meds, (sec.get("total_ms") or {}).get("median")))
    if not rows:
        r.not_run("Restore stages per template", "no snapshot.json with restores")
        return
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.5 * len(rows)))
    left = [0] * len(rows)
    for i, (_, label) in enumerate(STAGES):
        vals = [row[1][i] for row in rows]
        ax.barh([row[0] for row in rows], vals, left=left, label=label)
        left = [a + b for a, b in zip(left, vals)]
    for y, row in enumerate(rows):
        if row[2]:
            ax.plot([row[2]], [y], "k|", markersize=14)
    ax.set_xlabel("median ms (| : median total, request → first result)")
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=len(STAGES), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("where a restore's time goes", fontsize=9)
    finish(fig, snap, r.path("stages.png"))
    table = "| template | " + " | ".join(lbl for _, lbl in STAGES) + " | total |\n"
    table += "|---" * (len(STAGES) + 2) + "|\n"
    for name, meds, total in rows:
        table += f"| {name} | " + " | ".join(f"{v:.1f}" for v in meds) + \
                 f" | {'-' if total is None else f'{total:.1f}'} |\n"
    r.section("Restore stages per template", "Medians in ms.\n\n" + table, "stages.png")


def plot_serve(r, serve, name):
    res = (serve or {}).get("results") or {}
    if not res:
        r.not_run(f"wisp serve against concurrency ({name})",
                  f"no {name}.json with results (perf/run-all.sh {name})"
                  + (f": {serve['error'][:200]}" if serve and serve.get("error") else ""))
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, levels in res.items():
        levels = sorted(levels, key=lambda lv: lv["concurrency"])
        cs = [lv["concurrency"] for lv in levels]
        line, = a1.plot(cs, [lv["p50_ms"] for lv in levels], "o-", label=f"{mode} p50")
        a1.plot(cs, [lv["p99_ms"] for lv in levels], "x--", color=line.get_color(),
                label=f"{mode} p99")
        a2.plot(cs, [lv["throughput_per_s"] for lv in levels], "o-", color=line.get_color(),
                label=mode)
    levels_seen = sorted({lv["concurrency"] for lvs in res.values() for lv in lvs})
    for ax in (a1, a2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels_seen)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
        ax.set_xlabel("concurrency (clients)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    a1.set_yscale("log")
    a1.set_ylabel("latency, ms (log)")
    a2.set_ylabel("calls / s")
    handler = " ".join(serve.get("handler") or [])
    fig.suptitle(f"wisp serve ({serve.get('client')} client), handler {handler}", fontsize=9)
    png = f"{name}.png"
    finish(fig, serve, r.path(png))
    rows = "| mode | conc | calls | p50 ms | p99 ms | calls/s |\n|---|---|---|---|---|---|\n"
    for mode, levels in res.items():
        for lv in sorted(levels, key=lambda lv: lv["concurrency"]):
            rows += (f"| {mode} | {lv['concurrency']} | {lv['calls']} | {lv['p50_ms']:.1f} | "
                     f"{lv['p99_ms']:.1f} | {lv['throughput_per_s']:.2f} |\n")
    r.section(f"wisp serve against concurrency ({name})", rows, png)


def plot_pages(r, snap):
    series = []
    for name, h in handlers_of(snap).items():
        for key, label in (("restore_samples", ""), ("restore_no_prefetch_samples",
                                                     " no-prefetch")):
            s = h.get(key) or []
            touched = [x.get("pages_touched") for x in s if x.get("pages_touched") is not None]
            crit = [x.get("pages_not_prefetched") for x in s
                    if x.get("pages_not_prefetched") is not None]
            if touched:
                series.append((f"{name}{label}\ntouched", touched))
            if crit:
                series.append((f"{name}{label}\nnot prefetched", crit))
    if not series:
        r.not_run("Pages touched per restore", "no snapshot.json with pages_touched")
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(series)), 4))
    ax.boxplot([v for _, v in series], labels=[k for k, _ in series])
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel("guest pages (4 KiB) per restore")
    ax.set_title("pages a restore touches up to the first result", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    finish(fig, snap, r.path("pages.png"))
    body = "| series | median | min | max |\n|---|---|---|---|\n" + "".join(
        f"| {k.replace(chr(10), ' ')} | {median(v):.0f} | {min(v)} | {max(v)} |\n"
        for k, v in series)
    r.section("Pages touched per restore", body, "pages.png")


def plot_density(r, dens):
    points = (dens or {}).get("points") or []
    if not points:
        r.not_run("Density: summed PSS against live clones",
                  "no density.json: no benchmark measures PSS against up to 100 live clones yet")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    n = [p["clones"] for p in points]
    ax.plot(n, [p["sum_pss_kib"] / 1024 for p in points], "o-", label="summed PSS")
    if all("host_used_kib" in p for p in points):
        ax.plot(n, [p["host_used_kib"] / 1024 for p in points], "x--", label="host memory used (over before)")
    ax.set_xlabel("live clones")
    ax.set_ylabel("MiB")
    ax.grid(True, alpha=0.3)
    ax.plot(n, [p["sum_rss_kib"] / 1024 for p in points], ":", label="summed RSS")
    ax.legend(fontsize=7)
    ax.set_title(f"live clones of one {dens.get('mem_mib')} MiB exec template", fontsize=9)
    finish(fig, dens, r.path("density.png"))
    rows = "| clones | sum PSS MiB | sum RSS MiB | host +MiB |\n|---|---|---|---|\n" + "".join(
        f"| {p['clones']} | {p['sum_pss_kib'] / 1024:.1f} | {p['sum_rss_kib'] / 1024:.1f} | "
        f"{p.get('host_used_kib', 0) / 1024:.1f} |\n" for p in points)
    r.section("Density: summed PSS against live clones", rows, "density.png")


def plot_memsize(r, ms):
    points = (ms or {}).get("points") or []
    if not points:
        r.not_run("Snapshot create and restore against guest memory",
                  "no memsize.json: no benchmark measures 128 MiB to 2 GiB guests yet")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    mem = [p["mem_mib"] for p in points]
    for key, label in (("create_ms", "snapshot (pause + save)"),
                       ("restore_ms", "restore (VMM rebuilt)"),
                       ("first_result_ms", "restore → first result")):
        ax.plot(mem, [p.get(key) for p in points], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(mem)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
    ax.set_xlabel("guest memory, MiB")
    ax.set_ylabel("median ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"exec template, medians of {ms.get('runs')} restores per size", fontsize=9)
    finish(fig, ms, r.path("memsize.png"))
    rows = "| guest MiB | snapshot ms | restore ms | first result ms |\n|---|---|---|---|\n"
    for p in points:
        rows += f"| {p['mem_mib']} | " + " | ".join(
            "-" if p.get(k) is None else f"{p[k]:.1f}"
            for k in ("create_ms", "restore_ms", "first_result_ms")) + " |\n"
    r.section("Snapshot create and restore against guest memory", rows, "memsize.png")


NET_VMMS = [("wisp", "wisp"), ("qemu-tap", "QEMU tap, vhost=off"),
            ("qemu-vhost", "QEMU tap, vhost=on")]
NET_MEASURES = [("stream_up_mb_s", "stream guest→host, MiB/s"),
                ("stream_down_mb_s", "stream host→guest, MiB/s"),
                ("rr_tps", "1-byte round trips / s")]


def plot_net(r, net):
    med = (net or {}).get("median") or {}
    if not all(v in med for v, _ in NET_VMMS):
        r.not_run("virtio-net against QEMU", "no net.json (perf/run-all.sh net)")
        return
    summ = net.get("summary") or {}
    fig, axes = plt.subplots(1, len(NET_MEASURES), figsize=(11, 3.8))
    for ax, (key, label) in zip(axes, NET_MEASURES):
        vals = [med[v][key] for v, _ in NET_VMMS]
        # min-max of the runs as the error bar: what drift did to each median
        lo = [vals[i] - ((summ.get(v) or {}).get(key) or {}).get("min", vals[i])
              for i, (v, _) in enumerate(NET_VMMS)]
        hi = [((summ.get(v) or {}).get(key) or {}).get("max", vals[i]) - vals[i]
              for i, (v, _) in enumerate(NET_VMMS)]
        ax.bar([n.replace(", ", "\n") for _, n in NET_VMMS], vals, yerr=[lo, hi], capsize=4,
               color=["C0", "C1", "C2"])
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"virtio-net, {net.get('runs')} interleaved runs (median, min–max), "
                 f"{net.get('mem_mib')} MiB, {net.get('vcpus')} vCPU", fontsize=9)
    finish(fig, net, r.path("net.png"))
    rows = "| VMM | up MiB/s | down MiB/s | RR /s | RR p50 µs |\n|---|---|---|---|---|\n"
    table = [(n, med[v]) for v, n in NET_VMMS]
    slirp = (net.get("slirp") or {}).get("median")
    if slirp:
        table.append(("QEMU -netdev user (slirp)*", slirp))
    for name, m in table:
        rows += (f"| {name} | {m['stream_up_mb_s']:.1f} | {m['stream_down_mb_s']:.1f} | "
                 f"{m['rr_tps']:.0f} | {m['rr_p50_us']:.0f} |\n")
    ra = net.get("ratios") or {}
    for peer, name in (("wisp_over_qemu_tap", "user-space back-end"),
                       ("wisp_over_qemu_vhost", "vhost-net")):
        x = ra.get(peer) or {}
        rows += (f"\nwisp / {name}: up {x.get('stream_up', 0):.2f}×, down "
                 f"{x.get('stream_down', 0):.2f}×, RR {x.get('rr_tps', 0):.2f}×.")
    how = net.get("how") or {}
    rows += f"\n\n{how.get('stream', '')}; {how.get('rr', '')}."
    if slirp:
        rows += " \\* slirp: a footnote, no goal."
    r.section("virtio-net against QEMU", rows, "net.png")


def goal_table(verdicts):
    out = ["| goal | issue | words | measured | threshold | verdict |",
           "|---|---|---|---|---|---|"]
    for g, v in verdicts:
        status = f"**{v['status']}**" if v["status"] != goals_mod.NOT_RUN else v["status"]
        why = f" ({v['why']})" if v["status"] == goals_mod.NOT_RUN and v["why"] else ""
        words = g["words"].replace("|", "\\|")
        if g.get("superseded_by"):
            words += f" *(tightened by {g['superseded_by']})*"
        out.append(f"| {g['id']} | {g['issue']} | {words} | "
                   f"{goals_mod.fmt_value(v['measured'], g.get('unit', ''))} | "
                   f"{goals_mod.fmt_threshold(g)} | {status}{why.replace('|', '/')} |")
    return "\n".join(out)


def runs_table(d):
    """One row per benchmark JSON in d: its environment, commit, guest kernel and peer."""
    rows = ["| JSON | benchmark | environment · commit · guest kernel · peer |", "|---|---|---|"]
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json"):
            continue
        data = load_json(os.path.join(d, name))
        if isinstance(data, dict):
            rows.append(f"| {name} | {data.get('benchmark', '?')} | {caption(data)} |")
    return "\n".join(rows)


def write_report(d, goals_file=goals_mod.GOALS_FILE):
    """Writes d/report.md and its PNGs; returns (report.md's path, the verdicts)."""
    goals = goals_mod.load(goals_file)
    verdicts = goals_mod.judge_all(d, goals)
    r = Report(d)
    snap = with_ml(load_json(os.path.join(d, "snapshot.json")),
                   load_json(os.path.join(d, "ml_bench.json")))
    plot_cdfs(r, snap)
    plot_boot(r, load_json(os.path.join(d, "boot.json")))
    plot_stages(r, snap)
    for name in ("serve", "serve-python"):
        plot_serve(r, load_json(os.path.join(d, f"{name}.json")), name)
    plot_pages(r, snap)
    plot_density(r, load_json(os.path.join(d, "density.json")))
    plot_memsize(r, load_json(os.path.join(d, "memsize.json")))
    plot_net(r, load_json(os.path.join(d, "net.json")))
    counts = {s: sum(1 for _, v in verdicts if v["status"] == s)
              for s in (goals_mod.MET, goals_mod.MISSED, goals_mod.NOT_RUN)}
    lines = ["# wisp perf report", "",
             f"Goals from `perf/goals.json` (each in its issue's words), judged on the JSON in "
             f"`{d}`: {counts['MET']} MET, {counts['MISSED']} MISSED, {counts['NOT RUN']} NOT RUN. "
             "A MISSED goal does not fail `make perf`.", "", goal_table(verdicts), "",
             "## Where the numbers come from", "", runs_table(d), ""]
    for title, body in r.sections:
        lines += [f"## {title}", "", body, ""]
    path = os.path.join(d, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, verdicts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "build/perf"), help="the benchmarks' JSON; report.md "
        "and the PNGs go here too")
    ap.add_argument("--goals", default=goals_mod.GOALS_FILE)
    args = ap.parse_args()
    if not os.path.isdir(args.dir):
        print(f"report: {args.dir} is not a directory (run the benchmarks first: make perf)",
              file=sys.stderr)
        return 2
    path, verdicts = write_report(args.dir, args.goals)
    for g, v in verdicts:
        print(f"  {g['id']:26} {v['status']}")
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
