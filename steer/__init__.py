"""steer: STEER and the entropy interventions of RLVR, as a pure tensor core with thin layers around it."""

__version__ = "0.1.0"
