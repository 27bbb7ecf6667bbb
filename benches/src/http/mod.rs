//! HTTP benchmarking pieces: the closed-loop load generator (`client`), the
//! servers under test run as child processes (`servers`), and the external
//! `loadgen` tool the peer figures were measured with (`external`).

pub mod client;
pub mod external;
pub mod servers;
