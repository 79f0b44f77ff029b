//! Shared helpers for Loupe's benches.
