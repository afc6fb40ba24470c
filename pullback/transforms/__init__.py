"""One module per transformation; none of them mentions an individual primitive."""
