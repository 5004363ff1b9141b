"""The base of django-trakt's management commands: one style of usage error, exit statuses in ``--help``.

Every usage error, whether argparse finds it while parsing or ``handle()`` finds it later
(an unknown user, options that do not go together), is one line on stderr in argparse's
form, ``manage.py <command>: error: <message>``, and exit status 2: no usage dump, no
traceback, nothing on stdout. Through ``call_command`` it is a :class:`CommandError`
(``"Error: <message>"``, ``returncode`` 2), as Django's own parser raises. Failures of the
run itself (Trakt down, a database error) stay Django's ``CommandError: <message>``, with
their own statuses, listed under ``--help``.

How:

* converters (``type=``) raise :class:`argparse.ArgumentTypeError`, which argparse turns
  into ``argument --option: <message>`` and hands to the parser's ``error()``; any other
  exception from a converter would escape argparse as a traceback, since Django parses
  outside the ``try`` of ``run_from_argv``;
* ``handle()`` raises :class:`UsageError`, which :meth:`TraktCommand.execute` hands to the
  same ``error()``;
* :class:`TraktCommandParser` prints that one line and exits 2.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

#: argparse's exit status for a bad command line.
EXIT_USAGE = 2

#: A value starting with a minus and a digit ("-5m", "-1"): no option of these commands is spelt so.
_MINUS_DIGIT = re.compile(r"^-\d")


def one_line(message: str) -> str:
    """``message`` with every run of whitespace (newlines too) turned into one space."""
    return " ".join(message.split())


class UsageError(CommandError):
    """A bad command line that only ``handle()`` can tell: reported like argparse's own errors."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message), returncode=EXIT_USAGE)


def attached_negative_values(args: Sequence[str]) -> list[str]:
    """``--within -5m`` as ``--within=-5m``.

    argparse takes a word that starts with ``-`` for an option unless it is a plain
    negative number, so ``--within -5m`` would fail with "expected one argument", which
    says nothing about the value. Attached, the value reaches the option's converter,
    whose message says what is wrong with it ("must not be negative").
    """
    joined: list[str] = []
    for position, arg in enumerate(args):
        if arg == "--":  # everything after it is positional
            return joined + list(args[position:])
        previous = joined[-1] if joined else ""
        if _MINUS_DIGIT.match(arg) and previous.startswith("--") and previous != "--" and "=" not in previous:
            joined[-1] = f"{previous}={arg}"
        else:
            joined.append(arg)
    return joined


class TraktCommandParser(CommandParser):
    """A :class:`CommandParser` whose errors are a single line, without the usage."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        return super().parse_args(attached_negative_values(sys.argv[1:] if args is None else args), namespace)

    def error(self, message: str) -> NoReturn:
        line = one_line(message)
        if self.called_from_command_line:
            # argparse's convention (status 2, "prog: error: ..."), minus the usage dump:
            # the error alone says what to fix, and --help shows the rest.
            self.exit(EXIT_USAGE, f"{self.prog}: error: {line}\n")
        # call_command(): an exception the caller can catch, with Django's message.
        raise CommandError(f"Error: {line}", returncode=EXIT_USAGE)


class TraktCommand(BaseCommand):
    """A :class:`BaseCommand` that parses its options with :class:`TraktCommandParser`."""

    #: ``(status, meaning)`` for ``--help``; 2 (a bad command line) is there unless listed with its own words.
    exit_statuses: Sequence[tuple[int, str]] = ((0, "done"),)

    #: The parser of the last :meth:`create_parser` (call_command and run_from_argv both make one).
    usage_parser: CommandParser | None = None

    def exit_status_help(self) -> str:
        statuses = {EXIT_USAGE: "a bad option or argument (nothing was done)", **dict(self.exit_statuses)}
        return "Exit status: " + "; ".join(f"{status} {statuses[status]}" for status in sorted(statuses)) + "."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("epilog", self.exit_status_help())
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds a plain CommandParser and offers no hook to choose its class;
        # rebuilding it here would copy Django's base options. The subclass only
        # overrides parse_args() and error() and adds no state, so switching the class is safe.
        parser.__class__ = TraktCommandParser
        self.usage_parser = parser
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except UsageError as err:
            if self.usage_parser is None:  # execute() called without a parser: the error as it is
                raise
            self.usage_parser.error(str(err))
