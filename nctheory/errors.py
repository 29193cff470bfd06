"""Errors that the command line turns into one-line messages.

InputError   -> exit code 2: the user's input is malformed or outside what a function accepts.
SolverError  -> exit code 3: a numerical solver did not reach a certified optimum; its number is not reported.
"""


class NCTheoryError(Exception):
    """Base class of every error nctheory raises on purpose."""

    exit_code = 2


class InputError(NCTheoryError, ValueError):
    """Bad input: a one-line reason, exit code 2."""

    exit_code = 2


class SolverError(NCTheoryError, RuntimeError):
    """A solver that did not converge or certify its optimum. Never a number; exit code 3."""

    exit_code = 3
