"""The one exception family of rnnc.

Every error a user can cause (unsupported layer, bad shape, unknown target, corrupted record,
infeasible tiling) is an ``RnncError`` carrying one readable sentence; the CLI prints it without
a traceback and exits with code 2 (usage/input errors) or 1 (everything else).  This module is a
leaf: it imports nothing from rnnc, so the pure libraries may use it too.
"""

from __future__ import annotations


class RnncError(Exception):
    """Base class: a message written for people, not a traceback."""

    exit_code = 1


class UserInputError(RnncError):
    """Bad input from the user: unknown target, malformed file, impossible shape."""

    exit_code = 2


class UnsupportedError(RnncError):
    """A model, layer or op that rnnc cannot handle (yet); the message names it."""

    exit_code = 2


class IRVerificationError(RnncError):
    """A Program that breaks an IR invariant; the message names the node."""


class InfeasibleError(RnncError):
    """No tiling fits the device; the message explains which resource and by how much."""
