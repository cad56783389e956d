//! The pure core that decides what to change: rule matching and planning.
//! Nothing here does I/O or reads a clock.

pub mod fleet;
pub mod planner;
pub mod rules;
