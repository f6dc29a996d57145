"""``rnnc db``: inspect and maintain the tuning record database.

    rnnc db list [--target T] [--backend B] [--all] [--json]
    rnnc db show KEY_ID [--json]
    rnnc db merge A.jsonl DIR/ -o merged.jsonl      # best verified record per key, stale dropped
    rnnc db check [--models models.yaml --targets cpu/host]   # exit 1: corrupt, stale or missing
    rnnc db prune [--dedupe] [--dry-run]

Exit codes: 0 fine, 1 the check found problems (or ``show`` found nothing), 2 bad input.
"""

from __future__ import annotations

import argparse
import json

from rnnc.commands._db_common import add_db_options, fmt_seconds, open_db, readable_warnings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="list, show, merge, check and prune tuning records",
                       description="The tuning record database: records shipped with rnnc plus a local overlay "
                                   "($RNNC_DB). Lookups read the overlay first; records from other library "
                                   "versions or other hardware are reported as stale and never used.")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="one line per record")
    ls.add_argument("--target", help="only this target tag")
    ls.add_argument("--backend", help="only this backend")
    ls.add_argument("--all", action="store_true", help="include stale records")
    show = dsub.add_parser("show", help="every record of one key (id or id prefix)")
    show.add_argument("key", metavar="KEY_ID")
    merge = dsub.add_parser("merge", help="merge record files, keeping the best verified record per key")
    merge.add_argument("sources", nargs="+", metavar="SRC", help="record files or directories")
    merge.add_argument("-o", "--output", required=True, metavar="DEST", help="file to write (merged into if present)")
    check = dsub.add_parser("check", help="fail on corrupt lines, stale records or (with --models) missing ones")
    check.add_argument("--models", metavar="YAML", help="models.yaml: every model x target must have a record")
    check.add_argument("--targets", nargs="+", metavar="TAG", help="targets (TAG or TAG:BACKEND) for --models")
    prune = dsub.add_parser("prune", help="drop stale records and corrupt lines from the overlay")
    prune.add_argument("--dedupe", action="store_true", help="also keep only the best record per key")
    prune.add_argument("--dry-run", action="store_true", help="report what would be removed, change nothing")
    for q in (ls, show, merge, check, prune):
        add_db_options(q)
        q.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    readable_warnings()
    db = open_db(args)
    return ACTIONS[args.db_command](args, db)


def _list(args: argparse.Namespace, db) -> int:
    scan = db.scan(warn=not args.json)
    rows = [e for e in scan.entries if (args.all or not e.stale) and (not args.target or e.record.key.target ==
            args.target) and (not args.backend or e.record.key.backend == args.backend)]
    if args.json:
        print(json.dumps({"overlay": str(db.overlay), "records": [e.to_dict() for e in rows],
                          "problems": [str(p) for p in scan.problems]}, indent=2, sort_keys=True))
        return 0
    print(f"overlay: {db.overlay}  ({len(rows)} record(s) shown)")
    for e in rows:
        r = e.record
        when = f"~{fmt_seconds(r.estimate_s)} est." if r.estimated else fmt_seconds(r.time_s)
        flag = f"  STALE: {e.stale}" if e.stale else ""
        print(f"{r.key.id}  {r.key.target:<18} {r.key.backend:<5} {r.label or r.key.layer[:12]:<34} {when:>12}  "
              f"{e.layer}{flag}")
    return 0


def _show(args: argparse.Namespace, db) -> int:
    found = [e for e in db.scan(warn=not args.json).entries if e.record.key.id.startswith(args.key)]
    if args.json:
        print(json.dumps([e.to_dict() for e in found], indent=2, sort_keys=True))
    elif not found:
        print(f"rnnc: no record with key id {args.key!r}; see `rnnc db list`")
    for e in [] if args.json else found:
        print(f"{e.record.key.id}  {e.path}:{e.line} ({e.layer}{', STALE: ' + e.stale if e.stale else ''})")
        print("  " + json.dumps(e.record.to_dict(), indent=2, sort_keys=True).replace("\n", "\n  "))
    return 0 if found else 1


def _merge(args: argparse.Namespace, db) -> int:
    report = db.merge(args.sources, args.output)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"wrote {report['dest']}: {report['kept']} record(s) from {report['read']} usable")
        for line in report["dropped_stale"] + report["problems"]:
            print(f"  dropped {line}")
    return 0


def _check(args: argparse.Namespace, db) -> int:
    if args.models:
        from rnnc.tune.ci import run_ci

        report = run_ci(args.models, args.targets, db)
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True) if args.json else report.text())
        return 0 if report.ok else 1
    scan = db.scan(warn=False)
    stale = scan.stale()
    out = {"ok": not stale and not scan.problems, "records": len(scan.entries), "usable": len(scan.usable()),
           "stale": [f"{e.path}:{e.line}: {e.stale}" for e in stale], "corrupt": [str(p) for p in scan.problems]}
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"{out['records']} record(s), {out['usable']} usable, {len(stale)} stale, "
              f"{len(scan.problems)} corrupt line(s)")
        for line in out["stale"] + out["corrupt"]:
            print(f"  FAIL {line}")
    return 0 if out["ok"] else 1


def _prune(args: argparse.Namespace, db) -> int:
    report = db.prune(dedupe=args.dedupe, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {report['removed_records']} record(s) and {report['removed_lines']} corrupt line(s)")
        for f in report["files"]:
            print(f"  {f['file']}: -{f['removed_records']} records, -{f['removed_lines']} lines, {f['kept']} kept")
    return 0


ACTIONS = {"list": _list, "show": _show, "merge": _merge, "check": _check, "prune": _prune}
