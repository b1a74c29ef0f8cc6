"""Manipulators (move representations from one condition to another) and decoders (representations back to expression or labels)."""
