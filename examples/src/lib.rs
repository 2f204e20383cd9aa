//! Runnable templates; see `examples/` and the README. Nothing to import from here.
