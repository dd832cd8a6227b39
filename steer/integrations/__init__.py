"""Adapters that put the core's methods inside other trainers (verl, TRL).

Each adapter depends on :mod:`steer.core` and on its engine; the core never imports them.
"""
