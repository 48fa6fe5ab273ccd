//! Noise-over-TCP transport for Myriad (work in progress).
