"""The staged-program representation: IR, optimisation passes, code generation."""
