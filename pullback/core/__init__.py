"""The engine: primitives, traces and the array behaviour of tracers."""
