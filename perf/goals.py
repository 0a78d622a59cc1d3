"""The perf suite's goals (perf/goals.json) and their verdicts: MET, MISSED or NOT RUN.

Each goal names the benchmark JSON file that judges it (as perf/run-all.sh writes it into
build/perf/), a metric in it and a threshold. A benchmark prints the verdicts of its own goals at
the end of its table (print_verdicts); perf/report.py judges all of them (judge_all). A MISSED
goal is information, never a failure: the caller's exit status does not depend on it.
"""
import json
import os
import re

GOALS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goals.json")
MET, MISSED, NOT_RUN = "MET", "MISSED", "NOT RUN"
OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b,
       ">": lambda a, b: a > b, "==": lambda a, b: a == b}
# One step of a metric path: a key, optionally with a [key=value] selector for a list of dicts.
_STEP = re.compile(r"^([^\[\]]+)(?:\[([^=\]]+)=([^\]]+)\])?$")


def load(path=GOALS_FILE):
    """The goals, each checked for the fields the judge needs (a broken goals file is a bug in
    the suite: raise, naming the goal and the field)."""
    with open(path) as f:
        goals = json.load(f)["goals"]
    seen = set()
    for g in goals:
        for field in ("id", "issue", "words", "environment", "file", "metric", "op", "threshold"):
            if field not in g:
                raise ValueError(f"{path}: goal {g.get('id', '?')!r} has no {field!r}")
        if g["op"] not in OPS:
            raise ValueError(f"{path}: goal {g['id']!r}: op {g['op']!r} is not one of {list(OPS)}")
        for req in g.get("requires", []):
            if req.get("op") not in OPS or "metric" not in req or "threshold" not in req:
                raise ValueError(f"{path}: goal {g['id']!r}: bad requires {req!r}")
        if g["environment"] not in ("any", "testbed", "hardware"):
            raise ValueError(f"{path}: goal {g['id']!r}: environment {g['environment']!r}")
        if g["id"] in seen:
            raise ValueError(f"{path}: goal id {g['id']!r} twice")
        seen.add(g["id"])
    return goals


def lookup(report, path):
    """The value at `path` in a benchmark's JSON (see goals.json's "about"), or None."""
    node = report
    for step in path.split("."):
        m = _STEP.match(step)
        if not m or not isinstance(node, dict):
            return None
        node = node.get(m.group(1))
        if m.group(2) is not None:
            if not isinstance(node, list):
                return None
            key, want = m.group(2), m.group(3)
            node = next((x for x in node if isinstance(x, dict) and str(x.get(key)) == want),
                        None)
        if node is None:
            return None
    return node


def measure(goal, report):
    """The goal's measured value in `report`, or None when the report lacks it."""
    metric = goal["metric"]
    if isinstance(metric, dict):
        num, den = lookup(report, metric["num"]), lookup(report, metric["den"])
        if not isinstance(num, (int, float)) or not isinstance(den, (int, float)) or not den:
            return None
        return num / den
    return lookup(report, metric)


def environment_kind(report):
    env = (report or {}).get("environment") or ""
    if env.startswith("testbed"):
        return "testbed"
    if env.startswith("hardware"):
        return "hardware"
    return "unknown"


def judge(goal, report):
    """{"status", "measured", "why"} of one goal against its benchmark's JSON (None: not run)."""
    if not goal["file"] or not goal["metric"]:
        return {"status": NOT_RUN, "measured": None, "why": goal.get("note", "no benchmark")}
    if report is None:
        return {"status": NOT_RUN, "measured": None, "why": f"no {goal['file']}"}
    if "environment" not in report and report.get("error"):  # unreadable, or died early
        return {"status": NOT_RUN, "measured": None, "why": str(report["error"])[:200]}
    kind = environment_kind(report)
    if goal["environment"] != "any" and goal["environment"] != kind:
        return {"status": NOT_RUN, "measured": None,
                "why": f"set for {goal['environment']}, measured on {kind}"}
    for req in goal.get("requires", []):  # the size the goal is stated for, e.g. 20 clones
        have = lookup(report, req["metric"])
        if not isinstance(have, (int, float)) or not OPS[req["op"]](have, req["threshold"]):
            return {"status": NOT_RUN, "measured": None,
                    "why": f"stated for {req['metric']} {req['op']} {req['threshold']}, "
                           f"this run had {'none' if have is None else have}"}
    value = measure(goal, report)
    if value is None or (isinstance(value, float) and value != value):
        why = report.get("error") or f"{goal['file']} has no {describe_metric(goal)}"
        return {"status": NOT_RUN, "measured": None, "why": str(why)[:200]}
    ok = OPS[goal["op"]](value, goal["threshold"])
    return {"status": MET if ok else MISSED, "measured": value, "why": ""}


def describe_metric(goal):
    m = goal["metric"]
    return f"{m['num']} / {m['den']}" if isinstance(m, dict) else m


def read_reports(perf_dir, goals):
    """Each goal file's JSON found in `perf_dir` (a file that does not parse counts as absent
    and is named in the verdict)."""
    out = {}
    for name in sorted({g["file"] for g in goals if g["file"]}):
        path = os.path.join(perf_dir, name)
        try:
            with open(path) as f:
                out[name] = json.load(f)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            out[name] = {"error": f"{name} unreadable: {e}"}
    return out


def judge_all(perf_dir, goals=None):
    """[(goal, verdict)] for every goal against the JSON files in perf_dir."""
    goals = goals if goals is not None else load()
    reports = read_reports(perf_dir, goals)
    return [(g, judge(g, reports.get(g["file"]) if g["file"] else None)) for g in goals]


def fmt_value(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if unit == "x":
        return f"{v:.2f}x"
    if isinstance(v, float) and abs(v) < 10:
        return f"{v:.2f}{(' ' + unit) if unit else ''}"
    return f"{v:.0f}{(' ' + unit) if unit else ''}"


def fmt_threshold(goal):
    t = goal["threshold"]
    if isinstance(t, bool):
        return f"{goal['op']} {'yes' if t else 'no'}"
    return f"{goal['op']} {fmt_value(t, goal.get('unit', ''))}"


def print_verdicts(report, file_name, out=None):
    """The goals judged on `file_name` (the benchmark's JSON as run-all.sh names it), with a
    MET/MISSED/NOT RUN column, for the end of a benchmark's table. Never raises on a bad
    report: a verdict is reporting, and the benchmark's own exit status stays its own."""
    import sys
    out = out or sys.stdout
    mine = [g for g in load() if g["file"] == file_name]
    if not mine:
        return
    print(f"  goals ({os.path.relpath(GOALS_FILE)}):", file=out)
    print(f"    {'goal':26} {'issue':>5} {'measured':>12} {'goal':>14}  verdict", file=out)
    for g in mine:
        try:
            v = judge(g, report)
        except (TypeError, ValueError) as e:  # a metric of an unexpected type
            v = {"status": NOT_RUN, "measured": None, "why": f"cannot judge: {e}"}
        why = f" ({v['why']})" if v["status"] == NOT_RUN and v["why"] else ""
        print(f"    {g['id']:26} {g['issue']:>5} {fmt_value(v['measured'], g.get('unit', '')):>12} "
              f"{fmt_threshold(g):>14}  {v['status']}{why}", file=out)
