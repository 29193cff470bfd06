"""The `nctheory` command line.

Each subcommand lives in its own module ``nctheory/cli/cmd_<name>.py`` that defines

    NAME = "check-batches"          # the subcommand
    HELP = "one line for `nctheory --help`"
    def add_arguments(parser): ...  # argparse arguments
    def run(args) -> int: ...       # exit code: 0 success, 1 a claim/condition fails

Modules are discovered, so adding a command touches no shared file. Exit codes:
0 success; 1 a checked claim or condition fails; 2 bad input (one line, no traceback);
3 a solver did not reach a certified optimum (one line, no number); 130 interrupted (Ctrl-C);
143 terminated (SIGTERM, handled like Ctrl-C: clean-up runs and worker processes are stopped);
141 output pipe closed.

Every subcommand also takes ``--max-memory SIZE`` (e.g. 8G): the limit every memory estimate of the
command is checked against (:func:`nctheory.validate.check_budget`); without it, the available memory.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from nctheory.errors import NCTheoryError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors: one line, exit 2
        self.exit(2, f"nctheory: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    import nctheory.cli as pkg

    parser = _Parser(prog="nctheory", description="Executable theorems of neural-collapse geometry under SCL.")
    from nctheory import __version__

    parser.add_argument("--version", action="version", version=f"nctheory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    handlers = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("cmd_"):
            continue
        mod = importlib.import_module(f"nctheory.cli.{info.name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        if not any("--max-memory" in a.option_strings for a in p._actions):
            p.add_argument("--max-memory", metavar="SIZE", default=None,
                           help="refuse work whose memory estimate exceeds SIZE (e.g. 8G, 512M; default: the "
                                "memory available now)")
        handlers[mod.NAME] = mod.run
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from nctheory.cli.signals import Terminated, stop_worker_processes, terminate_as_interrupt
    from nctheory.validate import memory_limit_set

    try:
        with terminate_as_interrupt(), memory_limit_set(getattr(args, "max_memory", None)):
            code = handlers[args.command](args)
    except NCTheoryError as exc:  # one line, whatever the message holds
        msg = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        print(f"nctheory {args.command}: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        stop_worker_processes()
        print(f"nctheory {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        stop_worker_processes()
        print(f"nctheory {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: no traceback, and not
        import os  # exit 0 either (the verdict's code is lost); 141 is what a SIGPIPE'd tool reports

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
