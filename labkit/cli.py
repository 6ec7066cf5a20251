"""The ``labkit`` command: start, inspect, enter and reset the lab.

Every sub-command takes ``--lab NAME`` (default: $LABKIT_LAB, else ``lab``) so several
labs run side by side, one per learner or test worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labkit import engines as enginelib
from labkit import images as imagelib
from labkit import topology as topolib
from labkit.engines import ENGINES
from labkit.engines.base import Engine, labkit_command
from labkit.errors import LabkitError

EPILOG = """\
examples:
  labkit up                      start the lab (builds the images the first time)
  labkit status                  hosts, addresses, services
  labkit shell relay             a root shell on the relay
  labkit exec relay -- mailq     run one command on a host
  labkit reset relay             put the relay back to its baseline
  labkit apply relay             validate and apply your edits of sendmail.mc
  labkit snapshot save relay before-smrsh   keep the relay's mail configuration
  labkit check --section 08      grade the lab on section 08's controls (PASS/FAIL/ERROR)
  labkit check -v relay.closed_from_outside   one check, with the transcript it saw
  labkit grade assignments/relay-privacy.yaml --labs alice bob --csv class.csv
  labkit start 11                the capstone: relay, mx2 and server at their baseline
  labkit break --random --seed 7 --labs alice bob --hardened   a fault for each learner
  labkit break --assigned        who got which fault (--verify: fixed yet?)
  labkit finish                  back to the baseline, saying what that removed
  labkit class up --learners 12  a lab for each of 12 learners (--roster FILE: named ones)
  labkit class status            each learner's lab; labkit class down stops them all
  labkit down                    stop the lab and remove everything it made
  labkit up --lab alice          a second lab beside the first
"""


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _lab(args: argparse.Namespace):
    from labkit.lab import Lab
    return Lab(args.lab, engine=args.engine, progress=_progress)


def cmd_up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    started = time.monotonic()
    lab.up()
    print(f"lab {args.lab!r} is up ({time.monotonic() - started:.1f} s). "
          f"Try: {labkit_command('status', lab.engine.kind, args.lab)}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if not args.all:
        _lab(args).down()
        print(f"lab {args.lab!r} is down; nothing of it is left on this machine")
        return 0
    entries = enginelib.list_labs()
    if not entries:
        print("no labs on this machine")
        return 0
    topo = topolib.load()
    failed = 0
    for entry in entries:
        try:
            enginelib.get_engine(entry.engine, topo, entry.name).down()
        except LabkitError as exc:
            failed += 1
            print(f"labkit: error: lab {entry.name!r} ({entry.engine}): {exc}", file=sys.stderr)
            continue
        print(f"lab {entry.name!r} ({entry.engine}) is down; nothing of it is left on this machine")
    return 1 if failed else 0


def _not_running_message(args: argparse.Namespace) -> str:
    """What ``status`` says of a lab that is not running: how to start it, on the
    engine it belongs to (vagrant if asked for, by --engine or $LABKIT_ENGINE, or if the
    lab has a Vagrant state on this machine)."""
    from labkit.engines import vagrant
    if args.engine != "vagrant" and args.lab in vagrant.list_labs():
        return (f"lab {args.lab!r} is not running on the {args.engine} engine; it is a Vagrant "
                f"lab: {labkit_command('status', 'vagrant', args.lab)} "
                f"(start it: {labkit_command('up', 'vagrant', args.lab)})")
    return f"lab {args.lab!r} is not running (start it: {labkit_command('up', args.engine, args.lab)})"


def cmd_status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    statuses = lab.status()
    if not any(s.running for s in statuses):
        print(_not_running_message(args))
        return 3
    for st in statuses:
        state = "running" if st.running else "DOWN"
        print(f"{st.name:9} {st.fqdn:22} {state:8} {', '.join(st.addresses)}")
        for svc in st.services:
            mark = "ok " if svc.active else "!! "
            print(f"          {mark}{svc.name}: {svc.state}")
    return 0 if all(s.running and all(v.active for v in s.services) for s in statuses) else 1


def cmd_shell(args: argparse.Namespace) -> int:
    lab = _lab(args)
    lab.topology.host(args.host)
    argv = lab.engine.shell_argv(args.host)
    os.execvp(argv[0], argv)
    return 0  # not reached


def cmd_exec(args: argparse.Namespace) -> int:
    lab = _lab(args)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabkitError("exec needs a command: labkit exec HOST -- COMMAND [ARGS...]")
    lab.topology.host(args.host)
    argv = lab.engine.host_command(args.host, command)
    os.execvp(argv[0], argv)
    return 0  # not reached


def cmd_reset(args: argparse.Namespace) -> int:
    lab = _lab(args)
    started = time.monotonic()
    lab.reset(args.host)
    print(f"{args.host} is back to its baseline ({time.monotonic() - started:.1f} s)")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from labkit import mta
    lab = _lab(args)
    editor = mta.mta_for(lab.engine, args.host)
    what = "sendmail.mc" if isinstance(editor, mta.Sendmail) else "main.cf and master.cf"
    print(f"validating {what} on {args.host} ...", file=sys.stderr)
    result = editor.apply_hand_edits(check=False)
    print(result)
    return 0 if result.ok else 2


def cmd_snapshot(args: argparse.Namespace) -> int:
    from labkit import mta
    lab = _lab(args)
    if args.action == "list":
        names = mta.snapshot_list(lab.engine, args.host)
        print("\n".join(names) if names else f"{args.host} has no snapshots")
        return 0
    if not args.name:
        raise LabkitError(f"snapshot {args.action} needs a name: labkit snapshot {args.action} "
                          f"{args.host} NAME")
    if args.action == "save":
        print(f"saved {mta.snapshot_save(lab.engine, args.host, args.name)}")
    elif args.action == "diff":
        print(mta.snapshot_diff(lab.engine, args.host, args.name) or "no difference")
    else:
        result = mta.snapshot_restore(lab.engine, args.host, args.name, check=False)
        print(result)
        return 0 if result.ok else 2
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from labkit.course.hardening import section, start_state
    lab = _lab(args)
    target = section(args.section)
    started = time.monotonic()
    results = start_state(lab.engine, target.number, _progress)
    print(f"relay, mx2 and server are in the start state of section {target.number} "
          f"({target.title}): baseline, with {len(results)} "
          f"hardening changes of earlier sections ({time.monotonic() - started:.0f} s)")
    return 0


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def _break_assigned(args: argparse.Namespace) -> int:
    from labkit.checks import Status
    from labkit.course import faults
    from labkit.lab import Lab
    recs = faults.records()
    if args.labs:
        recs = [r for r in recs if r.lab in args.labs]
    if not recs:
        print("no faults injected on this machine (labkit break --random --seed N --labs ...)")
        return 0
    rows = []
    for r in recs:
        row = [r.lab, r.engine, r.fault, "" if r.seed is None else str(r.seed), r.at]
        if args.verify:
            lab = Lab(r.lab, engine=r.engine)
            if not lab.is_running():
                row.append("lab not running")
            else:
                report = faults.verify(lab, faults.get(r.fault))
                states = [x.status for x in report.results]
                row.append("fixed" if report.all_passed else
                           "could not observe" if Status.ERROR in states else "still broken")
        rows.append(row)
    header = ["LAB", "ENGINE", "FAULT", "SEED", "INJECTED"] + (["NOW"] if args.verify else [])
    print(_table(rows, header))
    return 0


def cmd_break(args: argparse.Namespace) -> int:
    from labkit.course import faults
    from labkit.lab import Lab
    if args.list:
        rows = [[f.name, f.host, f.title, ", ".join(f.catches)] for f in faults.catalogue()]
        print(_table(rows, ["FAULT", "HOST", "WHAT IT DOES", "CAUGHT BY"]))
        print(f"{len(rows)} faults; labkit break --explain FAULT gives the cause and the fix")
        return 0
    if args.explain:
        print(faults.get(args.explain).explain())
        return 0
    if args.assigned:
        return _break_assigned(args)
    if args.repair:
        lab = _lab(args)
        lab.repair_fault(args.repair)
        print(f"lab {lab.name!r}: the documented fix of {args.repair} applied")
        return 0
    if (args.fault is None) == (not args.random):
        raise LabkitError("name a fault (labkit break --list), or pick one with --random "
                          "--seed N")
    if args.random and args.seed is None:
        raise LabkitError("--random needs --seed N: the same seed gives each lab the same "
                          "fault again")
    names = args.labs or [args.lab]

    def one(name: str):
        lab = Lab(name, engine=args.engine, progress=_progress if len(names) == 1 else None)
        if args.hardened:
            _progress(f"lab {name!r}: relay, mx2 and server to the hardened state of the "
                      "whole course ...")
        return lab, lab.inject_fault(args.fault, args.seed if args.random else None,
                                     hardened=args.hardened, require_passing=not args.force)

    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, args.at_once)) as pool:
        for name, future in [(n, pool.submit(one, n)) for n in names]:
            try:
                lab, fault = future.result()
            except LabkitError as exc:
                failed += 1
                print(f"labkit: error: lab {name!r}: {exc}", file=sys.stderr)
                continue
            if args.random:
                print(f"lab {name!r}: a fault was injected (seed {args.seed}).\n"
                      f"  Ticket for the {fault.host} team: {fault.ticket}\n"
                      f"  Find it: {labkit_command('check', lab.engine.kind, name)}, the "
                      "logs, and what changed.")
            else:
                print(f"lab {name!r}: fault {fault.name} injected: {fault.title}.\n"
                      f"  Ticket for the {fault.host} team: {fault.ticket}")
    if args.random and len(names) > 1:
        print("who got which: labkit break --assigned")
    return 1 if failed else 0


def cmd_finish(args: argparse.Namespace) -> int:
    lab = _lab(args)
    if not lab.is_running():
        raise LabkitError(f"lab {lab.name!r} is not running: nothing to finish")
    print(lab.finish().text())
    return 0


def cmd_class(args: argparse.Namespace) -> int:
    from labkit import classroom
    if args.action == "up":
        existing = classroom.roster_path().exists()
        if args.learners is not None or args.roster:
            if existing:
                raise LabkitError(f"a class is already on this machine "
                                  f"({len(classroom.load().learners)} learners): stop it with "
                                  "labkit class down, or run labkit class up alone to start "
                                  "its labs that are not running")
            learners = (classroom.read_roster(args.roster) if args.roster
                        else classroom.numbered(args.learners))
            roster = classroom.Roster(learners, engine=args.engine)
        elif existing:
            roster = classroom.load()
        else:
            raise LabkitError("class up needs --learners N or --roster FILE")
        _progress(f"starting {len(roster.learners)} labs, {args.at_once} at a time ...")
        started = time.monotonic()
        results = classroom.class_up(roster, args.at_once, _progress)
        failed = [r for r in results if not r.ok]
        print(f"{len(results) - len(failed)} of {len(results)} labs running "
              f"({time.monotonic() - started:.0f} s)")
        for r in failed:
            print(f"  {r.name}: {r.error}")
        print(f"roster (keep it: the learners' passwords for the day): "
              f"{classroom.roster_path()}; see it with: labkit class roster")
        return 1 if failed else 0
    if args.action == "status":
        rows = classroom.class_status()
        header = ["LEARNER", "LAB", "HOSTS", "SERVICES DOWN", "FAULT"]
        table = [[r.name, r.lab, f"{r.hosts_up}/{r.hosts}" if r.hosts else "-",
                  ", ".join(r.services_down) or "-", r.fault or "-"] for r in rows]
        print(_table(table, header))
        running = sum(r.lab == "running" for r in rows)
        print(f"{running} of {len(rows)} labs running")
        return 0 if running == len(rows) and not any(r.services_down for r in rows) else 1
    if args.action == "roster":
        roster = classroom.load()
        print("name,password")
        for learner in roster.learners:
            print(f"{learner.name},{learner.password}")
        if roster.instructor_password:  # a roster older than the hub has none until serve
            print(f"instructor,{roster.instructor_password}")
        return 0
    if args.action == "serve":
        from labkit import hub
        cfg = hub.HubConfig(ip=args.ip, port=args.port, board_sections=",".join(args.section),
                            board_interval=args.board_interval,
                            board_stuck_after=args.board_stuck_after * 60, auth=args.auth)
        code = hub.serve(cfg, _progress)
        print(f"the hub stopped (exit {code}); the labs still run (labkit class down)")
        return 0
    stopped = classroom.class_down(_progress, args.at_once)
    print(f"{len(stopped)} labs down, the class is gone from this machine")
    return 0


def cmd_box(args: argparse.Namespace) -> int:
    from labkit import box, topology
    _progress(f"building the lab's Vagrant box (libvirt) into {args.output or box.DEFAULT_BOX}; "
              "a few minutes, with Debian's mirrors reachable ...")
    built = box.build(topology.load(), args.output, args.force, _progress)
    print(f"built: {built.summary()}")
    print("hand it to a class: copy it to vagrant/boxes/ of each laptop's copy of the kit (or "
          "serve it and set LABKIT_BOX to its URL); vagrant up --provider=libvirt then "
          "downloads nothing (docs/vagrant.md)")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from labkit import preflight
    from labkit.service import server
    preflight.require_root()
    print(f"the lab service listens on {args.socket} (Ctrl-C stops it); learners of the "
          "class on this machine may act on their own lab", file=sys.stderr, flush=True)
    try:
        server.serve(args.socket)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from labkit import checks
    chosen = checks.select(args.ids, args.section)
    if args.list:
        for c in chosen:
            print(f"{c.id:40} {c.section}  {c.title}")
        print(f"{len(chosen)} checks")
        return 0
    lab = _lab(args)
    quiet = args.json or not sys.stderr.isatty()

    def progress(result) -> None:
        if not quiet:
            print(f"  {result.line()}", file=sys.stderr, flush=True)
    if not quiet:
        print(f"running {len(chosen)} checks against lab {lab.name!r} ...", file=sys.stderr)
    report = checks.run_checks(lab, chosen, jobs=args.jobs, on_result=progress)
    print(report.to_json() if args.json else report.table(verbose=args.verbose))
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(report.to_junit())
        if not args.json:
            print(f"JUnit XML written to {args.junit}")
    return report.exit_code


def _submissions(paths: list[str]) -> list[Path]:
    """Notebook files, a folder standing for the notebooks in it."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(p.glob("*.ipynb"))
        elif p.suffix == ".ipynb" and p.is_file():
            found.append(p)
        else:
            raise LabkitError(f"{p} is neither a notebook (.ipynb) nor a folder of notebooks")
    if not found:
        raise LabkitError(f"no notebooks in {', '.join(paths)}")
    return found


def _write_reports(report, args: argparse.Namespace) -> None:
    for path, text in ((args.csv, report.to_csv), (args.json, report.to_json)):
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text())
            print(f"written: {path}")


def cmd_grade(args: argparse.Namespace) -> int:
    from labkit.checks.grading import Assignment, grade, grade_notebooks
    from labkit.lab import Lab
    assignment = Assignment.load(args.assignment) if args.assignment else None
    if args.notebook:
        subs = _submissions(args.notebook)
        print(f"grading {len(subs)} submitted notebook(s), each in a fresh lab of its own, "
              f"{args.at_once} at a time ...", file=sys.stderr)
        report = grade_notebooks(subs, args.section, assignment, args.at_once, _progress)
        print(report.table())
        _write_reports(report, args)
        return 0 if report.complete else 2
    if assignment is None:
        raise LabkitError("grade needs an assignment file, or --notebook SUBMISSION ...")
    names = args.labs or [args.lab]
    labs = [Lab(name, engine=args.engine, progress=_progress) for name in names]
    print(f"grading {len(labs)} lab(s) on '{assignment.title}' ({len(assignment.weights)} "
          f"checks, {assignment.possible:g} points) ...", file=sys.stderr)

    def progress(g) -> None:
        print(f"  {g.lab}: {g.score:g}/{assignment.possible:g} {g.verdict}", file=sys.stderr,
              flush=True)
    report = grade(labs, assignment, on_grade=progress)
    if len(labs) == 1:
        print(report.grades[0].text())
    else:
        print(report.table())
    _write_reports(report, args)
    return 0 if report.complete else 2


def cmd_exercises(args: argparse.Namespace) -> int:
    from labkit.course import notebooks
    if args.check:
        problems = notebooks.stale()
        for p in problems:
            print(p)
        if problems:
            print("run: labkit exercises (exercises/ is generated from solutions/)")
            return 1
        print("exercises/ is what solutions/ gives")
        return 0
    for path in notebooks.generate():
        print(f"wrote {path.relative_to(notebooks.REPO_DIR)}")
    return 0


def _lab_state(engine: Engine) -> str:
    """One phrase for ``labkit list``: running, stopped or stale, and what to do."""
    try:
        if engine.is_running():
            return "running"
        stopped = engine.has_stopped_hosts()
    except LabkitError as exc:
        return f"unknown ({str(exc).splitlines()[0]})"
    if stopped:
        return f"stopped (hosts kept: {engine.command_hint('up')} boots them again)"
    return (f"stale (cleared by {engine.command_hint('up')} "
            f"or {engine.command_hint('down')})")


def cmd_list(args: argparse.Namespace) -> int:  # noqa: ARG001
    topo = topolib.load()
    entries = enginelib.list_labs()
    if not entries:
        print("no labs on this machine")
    for entry in entries:
        engine = enginelib.get_engine(entry.engine, topo, entry.name)
        print(f"{entry.name:14} {entry.engine:8} {_lab_state(engine)}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    topo = topolib.load()
    if args.clear:
        imagelib.remove_all()
        print(f"removed every image in {imagelib.images_dir()}")
        return 0
    if args.build or args.rebuild:
        imagelib.ensure_images(topo, _progress, rebuild=args.rebuild)
    for name, host in topo.hosts.items():
        img = imagelib.image_for(host)
        state = f"{imagelib.sysutil.disk_usage_mb(img.path):.0f} MB" if img.exists \
            else "not built"
        print(f"{name:9} {img.path}  {state}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:  # noqa: ARG001
    paths = topolib.render_provisioning_files(topolib.load())
    print(f"wrote {len(paths)} files under {topolib.GENERATED_DIR}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lab", default=os.environ.get("LABKIT_LAB", "lab"), metavar="NAME",
                        help="which lab (default: $LABKIT_LAB or 'lab')")
    common.add_argument("--engine", default=os.environ.get("LABKIT_ENGINE", "local"),
                        choices=list(ENGINES), help="where the hosts run (default: local)")
    parser = argparse.ArgumentParser(
        prog="labkit", description="The MTA Hardening Lab: real Sendmail and Postfix "
        "servers in a relay/server topology, to harden, probe and grade.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("up", cmd_up, "start the lab (internet, relay, mx2, server, client) and wait until "
        "every service is up")
    p = add("down", cmd_down, "stop the lab and remove every namespace, mount and process it made "
            "(under vagrant: destroy its VMs)")
    p.add_argument("--all", action="store_true",
                   help="every lab on this machine, of every engine, each with its own engine "
                   "(stale ones included; see: labkit list)")
    add("status", cmd_status, "show each host, its addresses and its services "
        "(exit 0 all up, 1 something down, 3 lab not running)")
    p = add("shell", cmd_shell, "open a root shell on a host")
    p.add_argument("host", help="internet, relay, mx2, server or client")
    p = add("exec", cmd_exec, "run one command on a host: labkit exec HOST -- CMD [ARGS]")
    p.add_argument("host", help="internet, relay, mx2, server or client")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    p = add("reset", cmd_reset, "put a host back to its baseline (every change on it is lost)")
    p.add_argument("host", help="internet, relay, mx2, server or client")
    p = add("apply", cmd_apply, "validate and apply the MTA configuration you edited by hand "
            "on a host (sendmail.mc on relay, main.cf/master.cf on mx2 and server); a broken one is "
            "refused with the MTA's own errors and the last good one stays in force")
    p.add_argument("host", help="relay, mx2 or server")
    p = add("snapshot", cmd_snapshot, "save, list, diff or restore a host's mail configuration")
    p.add_argument("action", choices=["save", "list", "diff", "restore"])
    p.add_argument("host", help="relay, mx2 or server")
    p.add_argument("name", nargs="?", help="the snapshot's name")
    p = add("start", cmd_start, "put relay, mx2 and server in a course section's start state "
            "(the baseline, with every earlier section hardened; 11, the capstone: the baseline)")
    p.add_argument("section", help="a section number or name, e.g. 04 or relay")
    p = add("break", cmd_break, "the capstone's troubleshooting: inject a realistic "
            "misconfiguration into a hardened lab (a fault of the catalogue, or one picked per "
            "learner with --random --seed N), list the catalogue, or show which lab got which")
    p.add_argument("fault", nargs="?", help="the fault to inject (see --list)")
    p.add_argument("--random", action="store_true",
                   help="pick the fault for each lab from --seed and the lab's name (the "
                        "same seed gives each lab the same fault again); the learner sees "
                        "only the ticket")
    p.add_argument("--seed", type=int, metavar="N", help="with --random: the seed")
    p.add_argument("--labs", nargs="+", metavar="NAME", help="these labs instead of --lab")
    p.add_argument("--hardened", action="store_true",
                   help="first put relay, mx2 and server in the hardened state of the whole "
                        "course (every change on them is lost)")
    p.add_argument("--force", action="store_true",
                   help="inject even when the fault's checks do not pass first")
    p.add_argument("--at-once", type=int, default=4, metavar="N",
                   help="with --labs: labs handled at the same time (default 4)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--list", action="store_true",
                   help="the catalogue: each fault, its host, and the checks that catch it")
    g.add_argument("--explain", metavar="FAULT", help="a fault's cause and documented fix")
    g.add_argument("--assigned", action="store_true",
                   help="the instructor's view: which lab got which fault, and when")
    g.add_argument("--repair", metavar="FAULT", help="apply a fault's documented fix")
    p.add_argument("--verify", action="store_true",
                   help="with --assigned: run each fault's checks (fixed, still broken)")
    add("finish", cmd_finish, "put relay, mx2 and server back to their baseline and say what "
        "that removed (changed files, drop-ins, snapshots, injected faults)")
    p = add("class", cmd_class, "a class on this server: one lab per learner, started, "
            "watched and stopped together (up, status, roster, down)")
    p.add_argument("action", choices=["up", "status", "roster", "serve", "down"],
                   help="up: start a lab per learner (again: start those not running); "
                        "status: each learner's lab; roster: names and passwords as CSV; "
                        "serve: JupyterHub for the class, and the lab service; "
                        "down: stop every lab of the class")
    p.add_argument("--port", type=int, default=8000, help="with serve: the hub's port (8000)")
    p.add_argument("--ip", default="0.0.0.0",
                   help="with serve: the address the hub listens on (default all)")
    p.add_argument("--auth", choices=["roster", "pam"], default="roster",
                   help="with serve: how people log in: roster (the roster's names and "
                        "passwords for the day, the instructor as 'instructor'; default) or "
                        "pam (the server's own users and passwords; instructors are the "
                        "group labkit-instructors)")
    p.add_argument("--section", "-s", action="append", default=[], metavar="S",
                   help="with serve: the class board's sections (repeatable; default all)")
    p.add_argument("--board-interval", type=float, default=60, metavar="SECONDS",
                   help="with serve: how often the board grades every lab (default 60)")
    p.add_argument("--board-stuck-after", type=float, default=10, metavar="MINUTES",
                   help="with serve: minutes without progress after which a learner stands "
                        "out on the board (default 10)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--learners", type=int, metavar="N",
                   help="with up: N learners, learner01 ... (each given a password)")
    g.add_argument("--roster", metavar="FILE",
                   help="with up: a file of learners, one per line: name or name,password")
    p.add_argument("--at-once", type=int, default=4, metavar="N",
                   help="labs started or stopped at the same time (default 4)")
    p = add("box", cmd_box, "build the lab's own Vagrant box (Debian 12 for libvirt, with "
            "every package the lab's hosts need inside it), so that vagrant up downloads "
            "nothing")
    p.add_argument("action", choices=["build"], help="build: make the .box file")
    p.add_argument("--output", "-o", type=Path, metavar="FILE",
                   help="the .box file (default vagrant/boxes/labkit-bookworm-libvirt.box, "
                        "where the Vagrantfile looks)")
    p.add_argument("--force", action="store_true",
                   help="build again even if a box of the same inputs is in the cache "
                        "(/var/cache/labkit/boxes)")
    p = add("service", cmd_service, "run the lab service (root): learners who are not root "
            "start, reset, check and enter their own lab through it, and no other")
    p.add_argument("--socket", default=os.environ.get("LABKIT_SERVICE",
                                                      "/run/labkit/service.sock"),
                   metavar="PATH", help="where to listen (default /run/labkit/service.sock)")
    p = add("check", cmd_check, "run the graded checks against the lab: each probes the real "
            "servers and says PASS, FAIL (with what to fix) or ERROR (could not observe); "
            "exit 0 all passed, 1 a check failed, 2 a check could not observe")
    p.add_argument("ids", nargs="*", metavar="CHECK",
                   help="check ids (e.g. privacy.vrfy_disabled); default: every check")
    p.add_argument("--section", "-s", action="append", default=[], metavar="S",
                   help="a section's checks, by number or name (e.g. 08 or privacy); repeatable")
    p.add_argument("--list", action="store_true", help="list the checks, run nothing")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="what each probe saw: the transcript or listing of every check")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--junit", metavar="FILE", help="also write the report as JUnit XML")
    p.add_argument("--jobs", "-j", type=int, default=6, metavar="N",
                   help="checks run at once (default 6; the measured DoS checks run alone)")
    p = add("grade", cmd_grade, "grade one or several labs against an assignment (a YAML file: "
            "sections or checks, weights, a pass mark): each check's points, the total, and "
            "the evidence of each failure; a class table as CSV and JSON. Exit 0 every lab "
            "graded, 2 a check could not observe somewhere (grade INCOMPLETE)")
    p.add_argument("assignment", nargs="?",
                   help="the assignment file (see assignments/ for examples); with --notebook, "
                        "default: every check of the submissions' section")
    p.add_argument("--labs", nargs="+", metavar="NAME",
                   help="grade these labs (several at once) instead of --lab")
    p.add_argument("--notebook", nargs="+", metavar="SUBMISSION",
                   help="grade submitted exercise notebooks (files or folders): each gets a "
                        "fresh lab in its section's start state, its cells run there (as "
                        "a user made for it, allowed that lab only), then the checks probe "
                        "that lab; the lab and the user are removed afterwards")
    p.add_argument("--section", metavar="S", help="with --notebook: the section, when the "
                   "notebooks do not say (metadata labkit.section)")
    p.add_argument("--at-once", type=int, default=2, metavar="N",
                   help="with --notebook: labs graded at the same time (default 2)")
    p.add_argument("--csv", metavar="FILE", help="write the class table as CSV")
    p.add_argument("--json", metavar="FILE", help="write every grade, with evidence, as JSON")
    p = add("exercises", cmd_exercises, "write exercises/ from solutions/: every solution region "
            "(### BEGIN SOLUTION ... ### END SOLUTION) replaced by a stub, outputs cleared")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if exercises/ differs from what solutions/ gives")
    add("list", cmd_list, "list the labs on this machine, of every engine (local and vagrant), "
        "with their state")
    p = add("images", cmd_images, "list, build or clear the cached host images")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--build", action="store_true", help="build the images not yet cached")
    g.add_argument("--rebuild", action="store_true", help="build every image again")
    g.add_argument("--clear", action="store_true", help="remove every cached image")
    add("render", cmd_render, "write vagrant/provision/generated/ from the topology file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabkitError as exc:
        print(f"labkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("labkit: interrupted; nothing was left half-made", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
