"""The base of django-trakt's management commands: a bad option is one line on stderr and exit status 2.

Django's own parser prints the whole usage before the error, and an exception that a
``type=`` converter raises other than :class:`argparse.ArgumentTypeError` (or
``ValueError``/``TypeError``) escapes argparse and, since Django parses the options
outside the ``try`` of ``run_from_argv``, ends as a traceback. So:

* converters raise :class:`argparse.ArgumentTypeError`; argparse turns it into
  ``argument --option: <message>`` and calls the parser's ``error()``;
* :class:`TraktCommandParser` reports that as ``<prog>: error: <message>`` and exits 2
  from the command line, and raises :class:`CommandError` from ``call_command``;
* checks of option values in ``handle()`` raise :func:`usage_error`, which Django prints
  as ``CommandError: <message>`` and exits 2 with.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

#: argparse's exit status for a bad command line.
EXIT_USAGE = 2


def one_line(message: str) -> str:
    """``message`` with every run of whitespace (newlines too) turned into one space."""
    return " ".join(message.split())


def usage_error(message: str) -> CommandError:
    """The error to raise from ``handle()`` for a bad option value: exit status 2."""
    return CommandError(one_line(message), returncode=EXIT_USAGE)


class TraktCommandParser(CommandParser):
    """A :class:`CommandParser` whose errors are a single line, without the usage."""

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

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds a plain CommandParser and offers no hook to choose its class;
        # rebuilding it here would copy Django's base options. The subclass only
        # overrides error() and adds no state, so switching the class is safe.
        parser.__class__ = TraktCommandParser
        return parser
