"""Imported once by the forkserver: workers forked from it start warm (math_verify imported,
sympy/antlr initialised)."""

from steer.rewards._worker import warm_up

warm_up()
